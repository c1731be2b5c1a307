"""The daemon: owns the config, the store and the managers; runs the gRPC server.

``tether serve`` builds one ``Daemon`` and runs it until SIGTERM/SIGINT. Shutdown stops taking
RPCs, lets in-flight ones finish (bounded), closes the store and removes the socket; pods and
containers are left running on purpose.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import signal
from typing import Any

from cni.manager import CNIManager
from podsandbox import userns
from podsandbox.manager import SandboxManager
from podsandbox.types import AutoRange, SandboxConfig
from shim import config as configmod
from shim import log, metrics, rpc, tracing
from shim.containers.manager import ContainerManager
from shim.containers.usage import image_user
from shim.errors import Unimplemented
from shim.images import ImageManager
from shim.notify import notify
from shim.nspolicy.policy import NamespacePolicy
from shim.oci import features, host
from shim.rpc.services import Services
from shim.server import Behavior, Ready, Server
from shim.socket import SocketGuard
from shim.stats.collector import Collector
from shim.store import SandboxRecord, Store
from shim.streaming.server import StreamingServer


class Daemon:
    def __init__(
        self, cfg: configmod.Config, sources: configmod.ConfigSources, guard: SocketGuard
    ) -> None:
        # The caller holds the socket lock already: nothing below may touch shared state first.
        self.guard = guard
        self.config = cfg
        self.sources = sources
        self.logger = log.get("daemon")
        # 0711, not 0700: a container in a user namespace opens its rootfs as the pod's
        # root, who needs to search every dir above it. Nothing in it can be listed by
        # others, and what they could name is theirs to read only by its own mode.
        os.makedirs(cfg.paths.root, mode=0o711, exist_ok=True)
        os.chmod(cfg.paths.root, 0o711)
        os.makedirs(cfg.paths.run, mode=0o750, exist_ok=True)
        self.store = Store(os.path.join(cfg.paths.root, "tether.db"))
        net = cfg.network
        self.cni = CNIManager(
            net.conf_dir,
            net.plugin_dirs,
            os.path.join(cfg.paths.root, "cni"),
            timeout=net.plugin_timeout_seconds,
        )
        self.images = ImageManager(cfg, self.store,
                                   in_use=functools.partial(image_user, self.store))
        userns_off, userns_copy = self._userns_rootfs(cfg)
        self.sandboxes = SandboxManager(SandboxConfig(
            run_dir=cfg.paths.run, handlers=frozenset(cfg.runtime.handlers),
            cgroup_driver=cfg.runtime.cgroup_driver,
            default_cgroup_parent=cfg.runtime.default_cgroup_parent,
            pause_holder=cfg.runtime.pause_holder,
            userns_auto=AutoRange(cfg.userns.auto_first_id, cfg.userns.auto_size,
                                  cfg.userns.auto_count) if cfg.userns.auto_count else None,
            userns_unavailable=userns_off,
        ), self.store.sandboxes, SandboxRecord, self.cni,
            logger=log.get("sandbox"), span=tracing.span)
        kernel_rro = features.kernel_has_mount_setattr()
        self.features = {name: features.probe(h.path, kernel_rro, userns=not userns_off)
                         for name, h in cfg.runtime.handlers.items()}
        self.containers = ContainerManager(
            cfg, self.store, self.sandboxes, self.images,
            host.runtime_options(cfg.runtime.pids_limit, cfg.runtime.cgroup_driver),
            self.features, userns_copy=userns_copy,
        )
        self.nspolicy = NamespacePolicy(cfg.namespaces)
        self.streaming = StreamingServer(
            cfg.streaming.address, cfg.streaming.port, max_sessions=cfg.streaming.max_sessions,
            idle_timeout=cfg.streaming.idle_timeout_seconds, tls_cert=cfg.streaming.tls_cert,
            tls_key=cfg.streaming.tls_key, tls_ca=cfg.streaming.tls_ca)
        # What the stats calls keep between calls (CPU samples for rates, writable-layer
        # sizes) lives as long as the daemon. Writable layers are reported on the filesystem
        # ImageFsInfo calls the containers' one, so the kubelet can match them.
        self.stats = Collector(self.images.containers_dir)
        self._stop = asyncio.Event()

    def _userns_rootfs(self, cfg: configmod.Config) -> tuple[str, bool]:
        """(why pods cannot have user namespaces here, or ""; whether their containers get
        shifted copies of the image's layers instead of idmapped mounts)."""
        why = userns.unavailable(cfg.paths.root)
        no_idmap = "" if why or cfg.userns.rootfs == "copy" else \
            userns.idmap_unsupported(cfg.paths.root)
        if not why and no_idmap and cfg.userns.rootfs == "idmap":
            why = f"userns.rootfs is idmap, and idmapped mounts fail: {no_idmap}"
        if why:
            self.logger.warning("user namespaces unavailable", reason=why)
        copy = not why and (cfg.userns.rootfs == "copy" or bool(no_idmap))
        if copy:
            self.logger.info("user namespaces: containers get shifted copies of their layers",
                             reason=no_idmap or "userns.rootfs is copy")
        return why, copy

    # --- readiness, used by Status -------------------------------------------------------
    def runtime_ready(self) -> tuple[bool, str, str]:
        handler = self.config.runtime.handlers[self.config.runtime.default_handler]
        for what, path in (("OCI runtime", handler.path), ("conmon", self.config.runtime.conmon)):
            if not os.access(path, os.X_OK):
                return False, "RuntimeNotReady", f"{what} {path} is not an executable file"
        return True, "", ""

    async def network_ready(self) -> tuple[bool, str]:
        return await self.cni.status()

    # --- the gRPC server -------------------------------------------------------------------
    def _handlers(self) -> dict[str, tuple[Behavior, Ready | None]]:
        """Each CRI method's handler (and its ``ready``) bound to what handlers may touch."""
        services: Services = self  # mypy checks the daemon has it
        ready = rpc.READY
        return {
            name: (functools.partial(fn, services),
                   functools.partial(ready[name], services) if name in ready else None)
            for name, fn in rpc.HANDLERS.items()
        }

    async def serve(self) -> None:
        cfg = self.config
        guard = self.guard
        try:
            await self.images.reconcile()
            await self.containers.reconcile()
            await self.sandboxes.reconcile(self.containers)
            # Objects made at start live for good: keep the cyclic GC from re-scanning them,
            # which shows as latency spikes on the kubelet's List polling.
            gc.freeze()
            await self.streaming.start()
            # after reconcile: spans are of RPCs and their steps only
            tracing.configure(cfg.tracing)
            old_umask = os.umask(0o117)  # the socket is born 0660, no window at a wider mode
            try:
                server = Server(asyncio.get_running_loop(), cfg.server.listen, self._handlers(),
                                _unimplemented)
                server.start()
            finally:
                os.umask(old_umask)
            guard.secure()
            if cfg.metrics.enabled:
                metrics.serve(cfg.metrics.address, cfg.metrics.port)
            self._install_signals()
            self.logger.info(
                "serving",
                socket=cfg.server.listen,
                metrics=f"{cfg.metrics.address}:{cfg.metrics.port}" if cfg.metrics.enabled else "",
                tracing=cfg.tracing.endpoint if cfg.tracing.enabled else "",
                pid=os.getpid(),
            )
            notify("READY=1", f"STATUS=serving CRI on {cfg.server.listen}",
                   f"MAINPID={os.getpid()}")
            await self._stop.wait()
            notify("STOPPING=1")
            self.logger.info("shutting down", grace_seconds=cfg.server.shutdown_grace_seconds)
            await server.stop(cfg.server.shutdown_grace_seconds)
        finally:
            await self.streaming.stop()
            await self.images.close()
            await asyncio.to_thread(self.nspolicy.close)  # the queued audit lines, bounded
            await asyncio.to_thread(tracing.shutdown)  # the last spans, bounded by a timeout
            self.store.close()
            guard.release()
            self.logger.info("stopped")

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)

    def reload(self) -> None:
        """SIGHUP: load the config again; apply what can change live, log the rest."""
        notify("RELOADING=1")
        try:
            self._reload()
        finally:
            notify("READY=1")

    def _reload(self) -> None:
        try:
            new = configmod.load(self.sources)
        except configmod.ConfigError as e:
            self.logger.error("config reload failed; keeping the running config", error=str(e))
            return
        changes = configmod.diff(self.config, new)
        # registries.conf is re-read even when its path did not change (as CRI-O does)
        images_changed = self.images.reload(new.images)
        self.config.images = self.images.cfg
        # the namespace policy: taken by the next RunPodSandbox / CreateContainer
        self.nspolicy.reload(new.namespaces)
        self.config.namespaces = new.namespaces
        if not changes:
            self.logger.info("config reloaded; nothing changed in tether's config",
                             registries_conf_changed=images_changed)
            return
        applied = {k: v for k, v in changes.items() if k in configmod.LIVE_KEYS}
        pending = sorted(k for k in changes if k not in configmod.LIVE_KEYS)
        self.config.logging = new.logging
        log.configure(new.logging.level, new.logging.format)
        self.logger.info(
            "config reloaded",
            applied={k: {"old": o, "new": n} for k, (o, n) in applied.items()},
            needs_restart=pending,
        )


def _unimplemented(service: str, method: str, streaming: bool) -> Behavior:
    message = f"{method} is not implemented by tether yet ({service})"
    if streaming:

        async def stream(request: Any) -> Any:
            raise Unimplemented(message)
            yield  # makes this an async generator

        return stream

    async def unary(request: Any) -> Any:
        raise Unimplemented(message)

    return unary
