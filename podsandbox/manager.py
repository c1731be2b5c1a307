"""SandboxManager: the life of a pod sandbox — run, stop, remove, status, list, reconcile.

Crash safety: RunPodSandbox writes its intent (state ``creating`` with every path it will
touch) before the first side effect. Every undo step is idempotent and works from that record
alone, so a pod half-made when the daemon died is rolled back by ``reconcile`` at the next
start; ``stopping`` and ``removing`` are rolled forward the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from cni.errdefs import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    TetherError,
)
from cni.manager import CNIManager
from cni.types import NetworkResult, PodNetwork
from podsandbox import cgroups, files, kernel, namespaces, pauseholder, sysctls, userns, views
from podsandbox.lifecycle import Lifecycle
from podsandbox.observe import QUIET, Logger, SpanFactory, no_span
from podsandbox.repository import NewRecord, Rec, SandboxRecord, SandboxRepository
from podsandbox.types import (
    PIN_KINDS,
    Mode,
    NamespaceModes,
    PodContext,
    SandboxConfig,
    SandboxDetails,
    SandboxSpec,
    State,
    UserNamespace,
)


class PodContainers(Protocol):
    """The containers of a pod, stopped and removed with it (the container manager). Handed
    to each call that needs them, StopPodSandbox, RemovePodSandbox and reconcile, rather than
    set on the manager: the container manager is built after this one, with it."""

    async def stop_pod_containers(self, sandbox_id: str) -> None: ...

    async def remove_pod_containers(self, sandbox_id: str) -> None: ...


def _pod_key(name: str, namespace: str, uid: str, attempt: int) -> str:
    return f"{name}_{namespace}_{uid}_{attempt}"


class SandboxManager(Lifecycle[Rec]):
    """Over any repository of sandbox records (the daemon's: ``shim.store``), logging and
    tracing through what the daemon hands in (``podsandbox.observe``)."""

    records: SandboxRepository[Rec]

    def __init__(self, cfg: SandboxConfig, records: SandboxRepository[Rec],
                 new_record: NewRecord[Rec], cni: CNIManager, *,
                 logger: Logger = QUIET, span: SpanFactory = no_span) -> None:
        super().__init__("pod sandbox", records)
        self.cfg = cfg
        self.new_record = new_record
        self.cni = cni
        self.logger = logger
        self.span = span
        self.run_dir = cfg.run_dir
        self.default_parent = cfg.default_cgroup_parent
        # Tether's own default parent: removed when its last pod goes.
        self.own_parent = cgroups.parent_path(self.default_parent, cfg.cgroup_driver)
        self._started: dict[str, pauseholder.Started] = {}  # holders that are our children
        # node id ranges handed to pods being run, before their records are in the store
        self._userns_reserved: dict[str, list[tuple[int, int]]] = {}

    def _name_key(self, rec: Rec) -> str:
        return _pod_key(rec.name, rec.namespace, rec.uid, rec.attempt)

    # --- lookups -----------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def ready(self, sandbox_id: str) -> AsyncIterator[Rec]:
        """Hold the pod's lock while it is READY: what is done inside (a container created
        or started in it) cannot interleave with its stop or removal, which take the same
        lock. FailedPrecondition when the pod is not ready; NotFound when unknown."""
        pod = self.get(sandbox_id)
        async with self._lock(pod.id):
            pod = self.get(pod.id)
            if pod.state is not State.READY:
                raise FailedPrecondition(f"pod sandbox {pod.id} is not ready")
            yield pod

    def sandbox_dir(self, sandbox_id: str) -> str:
        return os.path.join(self.run_dir, "sandboxes", sandbox_id)

    # What others may know of a pod (its details are this manager's): podsandbox.views.
    host_view = staticmethod(views.host_view)
    status_view = staticmethod(views.status_view)

    def pod_context(self, rec: SandboxRecord) -> PodContext:
        return views.pod_context(rec, self.cfg.cgroup_driver)

    # --- run ---------------------------------------------------------------------------
    async def run(self, spec: SandboxSpec) -> str:
        if spec.runtime_handler not in self.cfg.handlers:
            raise InvalidArgument(
                f"runtime_handler {spec.runtime_handler!r} is not configured "
                f"(have: {', '.join(sorted(self.cfg.handlers))})"
            )
        sysctl_list = sysctls.validate(dict(spec.sysctls), spec.modes)
        sid = secrets.token_hex(32)
        cgroup = cgroups.pod_cgroup(spec.cgroup_parent or self.default_parent,
                                    self.cfg.cgroup_driver, sid)
        key = _pod_key(spec.name, spec.namespace, spec.uid, spec.attempt)
        user_ns = self._user_namespace(sid, spec)  # a block of Tether's reserved for sid
        if (holder := self._reserve(key, sid)) is not None:
            self._userns_reserved.pop(sid, None)
            raise AlreadyExists(
                f"pod sandbox {spec.namespace}/{spec.name} (uid {spec.uid}, attempt "
                f"{spec.attempt}) already exists as {holder}"
            )
        owned = spec.modes.owned()
        sdir = self.sandbox_dir(sid)
        details = SandboxDetails(
            modes=spec.modes,
            pins=namespaces.pin_paths(self.run_dir, sid, owned),
            cgroup=cgroup,
            sandbox_dir=sdir,
            shm_path=os.path.join(sdir, "shm") if spec.modes.ipc is Mode.POD else "/dev/shm",
            # no hostname given: the node's, as containerd and CRI-O do (a pod name may
            # be longer than the 64 bytes sethostname takes)
            hostname=spec.hostname or socket.gethostname(),
            log_directory=spec.log_directory,
            port_mappings=spec.port_mappings,
            bandwidth=spec.bandwidth,
            dns=spec.dns,
            userns=user_ns,
            privileged=spec.privileged,
            sysctls=dict(spec.sysctls),
        )
        rec = self.new_record(
            id=sid, name=spec.name, namespace=spec.namespace, uid=spec.uid,
            attempt=spec.attempt, state=State.CREATING, created_at=time.time_ns(),
            runtime_handler=spec.runtime_handler, labels=dict(spec.labels),
            annotations=dict(spec.annotations), details=details,
        )

        async def intent() -> None:
            with self.span("store.write", record="sandbox", state=rec.state,
                           pod_sandbox_id=sid):
                try:
                    await self.records.put(rec)
                except BaseException:
                    self._userns_reserved.pop(sid, None)
                    raise

        async def undo(e: BaseException) -> None:
            self.logger.info("run failed; undoing", pod_sandbox_id=sid, error=str(e))
            with self.span("sandbox.undo", pod_sandbox_id=sid):
                await self._undo(rec, details)

        async with self._intent(sid, key, intent, undo):
            await self._create(rec, details, spec, sysctl_list)
        return sid

    def _user_namespace(self, sid: str, spec: SandboxSpec) -> UserNamespace | None:
        """The kubelet's mappings, or (annotation) a block of ids no other pod maps to,
        reserved at once: two pods run at the same time never get the same block."""
        if spec.modes.user is Mode.POD and self.cfg.userns_unavailable:
            raise FailedPrecondition(f"this node cannot give pods a user namespace: "
                                     f"{self.cfg.userns_unavailable}")
        if not spec.userns_auto:
            return spec.userns
        auto = self.cfg.userns_auto
        if auto is None:
            raise InvalidArgument("user namespaces by annotation are off on this node "
                                  "(userns.auto_count = 0)")
        used = [r for ranges in self._userns_reserved.values() for r in ranges]
        for ranges in self.records.scan(
                lambda r: r.details.userns.host_ranges() if r.details.userns else None):
            used += ranges
        ns = userns.allocate(auto, used)
        self._userns_reserved[sid] = ns.host_ranges()
        return ns

    async def _create(
        self, rec: Rec, d: SandboxDetails, spec: SandboxSpec,
        sysctl_list: tuple[tuple[str, str], ...],
    ) -> None:
        loop = asyncio.get_running_loop()
        user_ns = d.userns
        with self.span("sandbox.prepare", pod_sandbox_id=rec.id, cgroup=d.cgroup):
            files.prepare(d.sandbox_dir, d.hostname, spec.dns)
            if spec.modes.ipc is Mode.POD:
                # owned by the pod's root when it has a user namespace
                files.mount_shm(d.shm_path, owner=user_ns.root() if user_ns else (0, 0))
            procs, d.cgroup_created = await loop.run_in_executor(None, cgroups.create, d.cgroup)
            namespaces.prepare(d.pins)
        if user_ns is not None:
            with self.span("sandbox.userns", pod_sandbox_id=rec.id):
                await userns.create(d.pins["user"], user_ns)
        # defer_join: the holder's last cgroup join (a write that waits out a kernel grace
        # period) overlaps the steps below; settled() is awaited before the pod is ready.
        with self.span("sandbox.pause_holder", pod_sandbox_id=rec.id,
                       namespaces=",".join(sorted(d.pins))) as sp:
            started = await pauseholder.start(
                self.cfg.pause_holder, d.pins, procs,
                os.path.join(d.sandbox_dir, "pause.log"), defer_join=True,
            )
            sp.set(pid=started.holder.pid)
        self._started[rec.id] = started
        d.holder, d.launcher = started.holder, started.launcher
        d.inodes = namespaces.inodes(d.pins)
        with self.span("store.write", record="sandbox", state=rec.state, pod_sandbox_id=rec.id):
            await self.records.put(rec)
        # Hostname, lo and sysctls do not depend on CNI: both run at once (as tasks, which
        # take the current span along as their parent).
        setup = self._traced_setup(rec.id, d, spec.modes, sysctl_list)
        network = (self._traced_cni_add(rec, d)
                   if spec.modes.network is Mode.POD else asyncio.sleep(0, None))
        setup_done, result = await asyncio.gather(setup, network, return_exceptions=True)
        if isinstance(setup_done, BaseException):
            raise setup_done
        if isinstance(result, BaseException):
            raise result
        if result is not None:
            d.cni_network = result.network_name
            d.ips = [str(ip.address.ip) for ip in result.sandbox_ips()]
            d.cni_result = dict(result.raw)
        with self.span("sandbox.settle", pod_sandbox_id=rec.id):
            await started.settled()
        rec.state = State.READY
        with self.span("store.write", record="sandbox", state=rec.state, pod_sandbox_id=rec.id):
            await self.records.put(rec)
        self._watch(rec.id, d)

    async def _traced_setup(self, sid: str, d: SandboxDetails, modes: NamespaceModes,
                            sysctl_list: tuple[tuple[str, str], ...]) -> None:
        with self.span("sandbox.namespaces", pod_sandbox_id=sid, sysctls=len(sysctl_list)):
            await asyncio.get_running_loop().run_in_executor(
                None, self._setup_namespaces, d, modes, sysctl_list)

    async def _traced_cni_add(self, rec: Rec, d: SandboxDetails) -> NetworkResult:
        with self.span("cni.add", pod_sandbox_id=rec.id) as sp:
            result = await self.cni.add(self._pod_network(rec, d))
            if sp.recording:
                sp.set(network=result.network_name,
                       ips=",".join(str(ip.address.ip) for ip in result.sandbox_ips()))
            return result

    @staticmethod
    def _setup_namespaces(
        d: SandboxDetails, modes: NamespaceModes, sysctl_list: tuple[tuple[str, str], ...]
    ) -> None:
        joined: dict[str, str] = {k: d.pins[k] for k in ("net", "ipc", "uts") if k in d.pins}
        if not joined:
            return

        def work() -> None:
            if modes.uts is Mode.POD:
                socket.sethostname(d.hostname)
            if modes.network is Mode.POD:
                kernel.link_up("lo")
            sysctls.apply(sysctl_list)

        kernel.in_namespaces(joined, work)

    def _pod_network(self, rec: Rec, d: SandboxDetails) -> PodNetwork:
        pin = d.pins.get("net", "")
        return PodNetwork(
            sandbox_id=rec.id,
            # A netns that is gone is passed as "" (as libcni users do): plugins then release
            # what they hold by container id instead of failing on the path.
            netns_path=pin if pin and kernel.is_nsfs(pin) else "",
            pod_name=rec.name,
            pod_namespace=rec.namespace,
            pod_uid=rec.uid,
            port_mappings=d.port_mappings,
            bandwidth=d.bandwidth,
            dns=d.dns,
        )

    async def _undo(self, rec: Rec, d: SandboxDetails) -> None:
        """Reverse every step RunPodSandbox may have taken; each part is idempotent."""
        errors: list[str] = []

        async def step(name: str, fn: Callable[[], Any]) -> None:
            try:
                res = fn()
                if asyncio.iscoroutine(res):
                    await res
            except Exception as e:
                errors.append(f"{name}: {e}")

        if d.modes.network is Mode.POD:
            await step("cni", lambda: self.cni.delete(self._pod_network(rec, d)))
        await step("pause-holder", lambda: self._kill(rec.id, d))
        await step("pins", lambda: namespaces.unpin(d.pins))
        await step("cgroup", lambda: cgroups.remove(d.cgroup, d.cgroup_created, self.own_parent))
        await step("files", lambda: files.remove(
            d.sandbox_dir, d.shm_path if d.modes.ipc is Mode.POD else ""))
        if errors:
            # Keep the record (state creating) so reconcile retries the cleanup.
            self.logger.error("undo incomplete", pod_sandbox_id=rec.id, errors=errors)
            return
        await self._forget(rec)

    async def _kill(self, sandbox_id: str, d: SandboxDetails) -> None:
        self._unwatch(sandbox_id)
        started = self._started.pop(sandbox_id, None)
        if started is not None:
            # A cgroup join still in flight would race the cgroup's removal.
            with contextlib.suppress(TetherError):
                await started.settled()
        await pauseholder.stop(d.holder, d.launcher)
        if d.cgroup and cgroups.kill_all(d.cgroup):  # a holder started but not yet recorded
            # wait (bounded) for them to exit, or the cgroup's removal fails with EBUSY and
            # leaves it behind (seen after a SIGKILL of the daemon mid-RunPodSandbox)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while cgroups.pids_in(d.cgroup) and loop.time() < deadline:
                await asyncio.sleep(0.01)
        if started is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                started.popen.wait(5)  # reap our child

    async def _forget(self, rec: Rec) -> None:
        await super()._forget(rec)
        self._userns_reserved.pop(rec.id, None)

    # --- stop / remove ---------------------------------------------------------------------
    async def stop(self, id_or_prefix: str, containers: PodContainers) -> None:
        """Under the pod's lock: the intent (``stopping``), then the pod's containers, the
        network, the pause-holder; ``notready``. The lock keeps a CreateContainer out until
        the intent is written (after which the pod is not ready); the intent lets reconcile
        finish a stop the daemon died in, containers first, as here."""
        sid = self.resolve(id_or_prefix)
        if sid is None:
            return  # stopping an unknown pod succeeds, as the CRI asks
        async with self._lock(sid):
            rec = self.records.get(sid)
            if rec is None:
                return
            await self._stop_locked(rec, containers)

    async def _stop_locked(self, rec: Rec, containers: PodContainers) -> None:
        d = rec.details
        if d.stopped:
            return
        if rec.state is State.CREATING:
            await self._undo(rec, d)
            return
        rec.state = State.STOPPING
        await self.records.put(rec)
        await containers.stop_pod_containers(rec.id)
        if d.modes.network is Mode.POD:
            # DEL even when the pin is gone: the plugins release IPs by container id.
            await self.cni.delete(self._pod_network(rec, d))
        await self._kill(rec.id, d)
        d.stopped = True
        rec.state = State.NOTREADY
        await self.records.put(rec)

    async def remove(self, id_or_prefix: str, containers: PodContainers) -> None:
        """Stop first (as ``stop``), then under the same lock the intent (``removing``), the
        pod's containers removed, its pins, cgroup and files; the record last."""
        sid = self.resolve(id_or_prefix)
        if sid is None:
            return
        async with self._lock(sid):
            rec = self.records.get(sid)
            if rec is None:
                return
            if rec.state is State.CREATING:
                await self._undo(rec, rec.details)
                return
            if rec.state is not State.REMOVING:
                await self._stop_locked(rec, containers)
                rec.state = State.REMOVING
                await self.records.put(rec)
            await self._remove_locked(rec, containers)

    async def _remove_locked(self, rec: Rec, containers: PodContainers) -> None:
        d = rec.details
        await containers.remove_pod_containers(rec.id)
        namespaces.unpin(d.pins)
        cgroups.remove(d.cgroup, d.cgroup_created, self.own_parent)
        files.remove(d.sandbox_dir, d.shm_path if d.modes.ipc is Mode.POD else "")
        await self._forget(rec)

    # --- resources -----------------------------------------------------------------------
    async def update_resources(self, id_or_prefix: str, limits: cgroups.PodLimits) -> None:
        """In-place pod resize: the limits on the pod's own cgroup (its cgroup parent, where
        its containers and pause-holder sit). A pod in Tether's shared default parent has
        none of its own to resize."""
        async with self.ready(id_or_prefix) as pod:
            parent = views.host_view(pod).parent
            if not parent or parent == self.own_parent:
                raise FailedPrecondition(
                    f"pod sandbox {pod.id} has no cgroup of its own (its config named no "
                    "cgroup_parent): nothing to resize")
            await asyncio.get_running_loop().run_in_executor(
                None, cgroups.set_limits, parent, limits)

    # --- liveness ------------------------------------------------------------------------
    def _watch(self, sandbox_id: str, d: SandboxDetails) -> None:
        """Learn of a pause-holder's death at once (pidfd), not by polling /proc."""
        if d.holder is not None and kernel.alive(d.holder.pid, d.holder.start_time):
            self._watch_process(sandbox_id, d.holder, self._holder_died)

    def _holder_died(self, sandbox_id: str) -> None:
        started = self._started.get(sandbox_id)
        if started is not None and started.popen.poll() is not None:
            self._started.pop(sandbox_id, None)
        asyncio.get_running_loop().create_task(self._mark_notready(sandbox_id))

    async def _mark_notready(self, sandbox_id: str) -> None:
        async with self._lock(sandbox_id):
            rec = self.records.get(sandbox_id)
            if rec is None or rec.state is not State.READY:
                return
            d = rec.details
            if d.holder and kernel.alive(d.holder.pid, d.holder.start_time):
                return
            self.logger.warning("pause-holder died; pod not ready", pod_sandbox_id=sandbox_id)
            rec.state = State.NOTREADY
            await self.records.put(rec)

    # --- reconcile ------------------------------------------------------------------------
    async def reconcile(self, containers: PodContainers) -> None:
        """At start, after the containers' reconcile: finish or undo interrupted work
        (a pod stopping or removing has its containers stopped or removed too), notice dead
        pause-holders, and remove what no record owns (pins, sandbox dirs, CNI cache entries)."""
        summary: dict[str, int] = {"rolled_back": 0, "stopped": 0, "removed": 0, "notready": 0}
        for rec in self.records.list():
            d = rec.details
            self._remember(rec)
            try:
                if rec.state is State.CREATING:
                    await self._undo(rec, d)
                    summary["rolled_back"] += 1
                elif rec.state is State.STOPPING:
                    await self._stop_locked(rec, containers)
                    summary["stopped"] += 1
                elif rec.state is State.REMOVING:
                    await self._remove_locked(rec, containers)
                    summary["removed"] += 1
                elif rec.state is State.READY:
                    if d.holder and kernel.alive(d.holder.pid, d.holder.start_time):
                        self._watch(rec.id, d)
                    else:
                        rec.state = State.NOTREADY
                        await self.records.put(rec)
                        summary["notready"] += 1
            except TetherError as e:
                self.logger.error("reconcile failed", pod_sandbox_id=rec.id, error=e.message)
        orphans = await self._remove_orphans()
        self.logger.info("sandboxes reconciled", **summary, orphans=orphans,
                         sandboxes=len(self.records))

    async def _remove_orphans(self) -> int:
        # Only this daemon's private dirs are scanned. Cgroups are not: the intent record is
        # written before a cgroup is made and kept until undo succeeds, and the parent cgroup
        # may be shared with another runtime's pods.
        known = set(self.records.ids())
        count = 0
        for sid in namespaces.pinned_ids(self.run_dir) - known:
            namespaces.unpin(namespaces.pin_paths(self.run_dir, sid, PIN_KINDS))
            count += 1
        base = os.path.join(self.run_dir, "sandboxes")
        with contextlib.suppress(FileNotFoundError):
            for sid in set(os.listdir(base)) - known:
                files.remove(os.path.join(base, sid), os.path.join(base, sid, "shm"))
                count += 1
        for sid in self.cni.cached_container_ids() - known:
            with contextlib.suppress(TetherError):
                await self.cni.delete(PodNetwork(sandbox_id=sid, netns_path="", pod_name="",
                                                 pod_namespace="", pod_uid=""))
            count += 1
        return count

