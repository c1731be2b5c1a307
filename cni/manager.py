"""Pod network attachment through the default CNI network, with libcni's semantics.

ADD runs the chain in order, each plugin getting the previous one's result as ``prevResult``,
and caches the final result; a failure part-way runs DEL over the chain so the caller is left
with nothing to clean up. DEL runs the chain in reverse with the cached result (spec >= 0.4.0)
and the network config, CNI_ARGS and capability args cached at ADD time, so it still works
after the config dir changed. CHECK runs in order with the cached result.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from cni import result as results
from cni.cache import CacheCorrupt, CacheEntry, ResultCache
from cni.config import ConfigInvalid, parse_conflist
from cni.errdefs import FailedPrecondition, Internal, NotFound, TetherError, trim
from cni.invoke import Invocation, exec_plugin, find_plugin
from cni.runtime import RuntimeConf, format_cni_args, plugin_stdin
from cni.types import NetworkConfigList, NetworkResult, PluginConfig, PodNetwork
from cni.version import at_least
from cni.watcher import ConfWatcher

log = structlog.get_logger(component="cni")


@dataclasses.dataclass(frozen=True)
class _Attachment:
    """What DEL/CHECK work from: the network (cached config if any), args and prevResult."""

    network: NetworkConfigList | None
    rt: RuntimeConf
    prev_result: dict[str, Any] | None
    entry: CacheEntry | None
    cache_name: str  # network name the cache file is filed under


class CNIManager:
    def __init__(self, conf_dir: str, plugin_dirs: Sequence[str], cache_dir: str,
                 timeout: float = 60.0) -> None:
        self.conf_dir = conf_dir
        self.plugin_dirs = tuple(plugin_dirs)
        self.cache_dir = cache_dir
        self.timeout = timeout
        self._watcher = ConfWatcher(conf_dir, self.plugin_dirs)
        self._cache = ResultCache(cache_dir)
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary())

    # --- network config -------------------------------------------------------------------

    def network(self) -> NetworkConfigList | None:
        return self._watcher.current().network

    def ready(self) -> tuple[bool, str]:
        loaded = self._watcher.current()
        if loaded.network is not None:
            return True, ""
        reason = f"no valid CNI network config in {self.conf_dir}"
        if loaded.skipped:
            reason += ": " + "; ".join(f"{os.path.basename(p)}: {why}" for p, why in loaded.skipped)
        return False, trim(reason)

    async def status(self) -> tuple[bool, str]:
        ok, reason = self.ready()
        net = self.network()
        if not ok or net is None:
            return False, reason
        if not at_least(net.cni_version, "1.1.0"):
            return True, ""
        inv = Invocation("STATUS", cni_path=self._cni_path())
        for plugin in net.plugins:
            try:
                await self._call(plugin, inv, plugin_stdin(net, plugin))
            except TetherError as exc:
                return False, f"CNI network {net.name} not ready: {exc.message}"
        return True, ""

    # --- attachment -----------------------------------------------------------------------

    async def add(self, pod: PodNetwork) -> NetworkResult:
        rt = RuntimeConf.for_pod(pod)
        net = self._require_network()
        async with self._lock_for(pod.sandbox_id):
            res = await self._add(net, rt)
        log.info("cni add", sandbox_id=pod.sandbox_id, network=net.name,
                 ips=[str(ip.address) for ip in res.ips])
        return res

    async def check(self, pod: PodNetwork) -> None:
        rt = RuntimeConf.for_pod(pod)
        async with self._lock_for(pod.sandbox_id):
            att = self._attachment(rt)
            if att.entry is None or att.network is None:
                raise NotFound(f"no cached CNI result for sandbox {pod.sandbox_id} "
                               f"interface {pod.ifname}")
            net = att.network
            if not at_least(net.cni_version, "0.4.0") or net.disable_check:
                return  # CHECK does not exist before 0.4.0; disableCheck turns it off
            inv = self._inv("CHECK", att.rt)
            for plugin in net.plugins:
                await self._call(plugin, inv, plugin_stdin(net, plugin, att.prev_result,
                                                           att.rt.capability_args))

    async def delete(self, pod: PodNetwork) -> None:
        rt = RuntimeConf.for_pod(pod)
        async with self._lock_for(pod.sandbox_id):
            att = self._attachment(rt)
            if att.network is None:
                log.warning("cni del: no network config and no cached attachment; nothing to do",
                            sandbox_id=pod.sandbox_id, conf_dir=self.conf_dir)
                return
            await self._del_chain(att.network, att.rt, att.prev_result, best_effort=False)
            self._cache.remove(att.cache_name, rt.container_id, rt.ifname)
        log.info("cni del", sandbox_id=pod.sandbox_id, network=att.network.name)

    def cached_container_ids(self) -> set[str]:
        return self._cache.container_ids()

    def cached_result(self, sandbox_id: str, ifname: str | None = None) -> NetworkResult | None:
        entries = [e for e in self._cache.find(sandbox_id, ifname) if e.result]
        if not entries:
            return None
        net = self.network()
        current = net.name if net else ""
        entries.sort(key=lambda e: (e.network_name != current, e.ifname != "eth0"))
        entry = entries[0]
        assert entry.result is not None
        try:
            return results.parse(entry.network_name, entry.result)
        except results.ResultInvalid as exc:
            log.warning("invalid cached CNI result", sandbox_id=sandbox_id, error=str(exc))
            return None

    # --- internals ------------------------------------------------------------------------

    def _require_network(self) -> NetworkConfigList:
        net = self.network()
        if net is None:
            raise FailedPrecondition(f"CNI network not ready: {self.ready()[1]}")
        return net

    def _lock_for(self, sandbox_id: str) -> asyncio.Lock:
        lock = self._locks.get(sandbox_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[sandbox_id] = lock
        return lock

    def _cni_path(self) -> str:
        return ":".join(self.plugin_dirs)

    def _inv(self, command: str, rt: RuntimeConf) -> Invocation:
        return Invocation(command=command, container_id=rt.container_id, netns=rt.netns,
                          ifname=rt.ifname, cni_args=format_cni_args(rt.cni_args),
                          cni_path=self._cni_path())

    async def _call(self, plugin: PluginConfig, inv: Invocation, stdin: bytes) -> bytes:
        path = find_plugin(plugin.type, self.plugin_dirs)
        return await exec_plugin(path, plugin.type, inv, stdin, self.timeout)

    async def _add(self, net: NetworkConfigList, rt: RuntimeConf) -> NetworkResult:
        prev: dict[str, Any] | None = None
        inv = self._inv("ADD", rt)
        try:
            for plugin in net.plugins:
                out = await self._call(plugin, inv,
                                       plugin_stdin(net, plugin, prev, rt.capability_args))
                try:
                    prev = results.decode_output(out, net.cni_version)
                except results.ResultInvalid as exc:
                    raise Internal(f"CNI plugin {plugin.type} returned an invalid result (ADD): "
                                   f"{exc}", detail=out.decode(errors="replace")) from None
            assert prev is not None
            try:
                parsed = results.parse(net.name, prev)
            except results.ResultInvalid as exc:
                raise Internal(f"CNI network {net.name} returned an invalid result (ADD): {exc}",
                               detail=str(prev)) from None
            entry = CacheEntry(container_id=rt.container_id, network_name=net.name,
                               ifname=rt.ifname, config=net.bytes, netns=rt.netns,
                               cni_args=rt.cni_args, capability_args=rt.capability_args,
                               result=prev)
            try:
                self._cache.write(entry)
            except OSError as exc:
                raise Internal(f"cannot write CNI result cache for sandbox {rt.container_id}: "
                               f"{exc.strerror or exc}") from None
        except Exception as exc:
            await self._undo_add(net, rt, prev, exc)
            raise
        return parsed

    async def _undo_add(self, net: NetworkConfigList, rt: RuntimeConf,
                        last_result: dict[str, Any] | None, cause: Exception) -> None:
        """After a failed ADD: DEL over the whole chain (best effort) and drop the cache entry."""
        prev = last_result if at_least(net.cni_version, "0.4.0") else None
        errors = await self._del_chain(net, rt, prev, best_effort=True)
        self._cache.remove(net.name, rt.container_id, rt.ifname)
        log.warning("cni add failed; attachment rolled back", sandbox_id=rt.container_id,
                    network=net.name, error=str(cause), rollback_errors=errors or None)
        if errors and isinstance(cause, TetherError):
            note = "rollback (DEL) also failed: " + "; ".join(errors)
            cause.detail = f"{cause.detail}\n{note}" if cause.detail else note

    async def _del_chain(self, net: NetworkConfigList, rt: RuntimeConf,
                         prev: Mapping[str, Any] | None, *, best_effort: bool) -> list[str]:
        """DEL in reverse order. Stops at the first error unless ``best_effort`` (then the
        errors are returned)."""
        inv = self._inv("DEL", rt)
        errors: list[str] = []
        for plugin in reversed(net.plugins):
            try:
                await self._call(plugin, inv, plugin_stdin(net, plugin, prev, rt.capability_args))
            except TetherError as exc:
                if not best_effort:
                    raise
                errors.append(exc.message)
        return errors

    def _attachment(self, rt: RuntimeConf) -> _Attachment:
        current = self.network()
        entry: CacheEntry | None = None
        if current is not None:
            try:
                entry = self._cache.read(current.name, rt.container_id, rt.ifname)
            except CacheCorrupt as exc:
                # libcni drops an unreadable entry and carries on without prevResult.
                log.warning("dropping corrupt CNI cache entry", error=str(exc))
                self._cache.remove(current.name, rt.container_id, rt.ifname)
        if entry is None:
            found = self._cache.find(rt.container_id, rt.ifname)
            entry = found[0] if found else None
        if entry is None:
            return _Attachment(current, rt, None, None, current.name if current else "")

        net = current
        try:
            net = parse_conflist(entry.config, source=f"cache:{entry.network_name}")
        except ConfigInvalid as exc:
            log.warning("cached CNI config unusable; using the current one",
                        network=entry.network_name, error=str(exc))
        rt = dataclasses.replace(rt, cni_args=entry.cni_args or rt.cni_args,
                                 capability_args=entry.capability_args)
        prev = None
        if net is not None and entry.result and at_least(net.cni_version, "0.4.0"):
            try:
                prev = results.convert(entry.result, net.cni_version)
            except results.ResultInvalid as exc:
                log.warning("cached CNI result unusable", error=str(exc))
        return _Attachment(net, rt, prev, entry, entry.network_name)
