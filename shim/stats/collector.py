"""CRI ContainerStats / PodSandboxStats from store records and the host's counters.

Records are turned into plain targets on the event loop (``container_target``,
``pod_target``); ``Collector`` then reads the counters, typically in a worker thread, and
keeps what must outlive a call: the previous CPU samples and the writable-layer sizes.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from podsandbox import cgroups as pod_cgroups
from podsandbox.types import SandboxDetails
from shim import log
from shim.containers.types import CState
from shim.cri import api_pb2 as pb
from shim.stats import cgroup, network
from shim.stats.layer import LayerCache
from shim.stats.rates import CpuRates

if TYPE_CHECKING:
    from shim.daemon import Daemon

@dataclass(frozen=True)
class ContainerTarget:
    id: str
    sandbox_id: str
    name: str
    attempt: int
    labels: dict[str, str]
    annotations: dict[str, str]
    running: bool
    cgroup: str  # relative to each hierarchy's root
    upper: str  # the writable layer


@dataclass(frozen=True)
class PodTarget:
    id: str
    name: str
    uid: str
    namespace: str
    attempt: int
    labels: dict[str, str]
    annotations: dict[str, str]
    cgroup: str  # the pause-holder's
    parent: str  # the pod's cgroup parent (containers sit beside the holder there)
    netns: str | None
    containers: list[ContainerTarget] = field(default_factory=list)


def cgroup_relpath(path: str) -> str:
    """``linux.cgroupsPath`` relative to the hierarchy roots: cgroupfs ``/a/b`` or systemd
    ``<slice>:<prefix>:<name>`` (``<slice expanded>/<prefix>-<name>.scope``)."""
    if ":" in path and not path.startswith("/"):
        slice_, prefix, name = [*path.split(":"), "", ""][:3]
        leaf = f"{prefix}-{name}.scope" if prefix else f"{name}.scope"
        return "/".join(p for p in (pod_cgroups.expand_slice(slice_), leaf) if p)
    return path.strip("/")


def container_target(rec: Any) -> ContainerTarget:
    d = rec.details
    upper = f"{d['container_dir']}/upper" if d.get("container_dir") else ""
    return ContainerTarget(
        id=rec.id, sandbox_id=rec.sandbox_id, name=rec.name, attempt=rec.attempt,
        labels=dict(rec.labels), annotations=dict(rec.annotations),
        running=rec.state == CState.RUNNING.value,
        cgroup=cgroup_relpath(d.get("cgroup_path", "")), upper=upper,
    )


def pod_target(rec: Any, containers: list[ContainerTarget]) -> PodTarget:
    pd = SandboxDetails.from_dict(rec.details)
    parent = pd.cgroup.rsplit("/", 1)[0] if "/" in pd.cgroup else ""
    netns = pd.pins.get("net") if pd.modes.get("net", "POD") == "POD" else None
    return PodTarget(
        id=rec.id, name=rec.name, uid=rec.uid, namespace=rec.namespace, attempt=rec.attempt,
        labels=dict(rec.labels), annotations=dict(rec.annotations), cgroup=pd.cgroup,
        parent=parent, netns=netns, containers=containers,
    )


def shared_parents(parents: list[str], default_parent: str) -> set[str]:
    """Parents that cannot stand for one pod: Tether's default (relative path), the root, or
    any two pods have in common. The kubelet gives each pod a parent of its own."""
    seen: set[str] = set()
    shared = {"", default_parent}
    for p in parents:
        if p in seen:
            shared.add(p)
        seen.add(p)
    return shared


def _u(v: int) -> pb.UInt64Value:
    return pb.UInt64Value(value=max(int(v), 0))


class Collector:
    def __init__(self, fs_mountpoint: str, hierarchies: cgroup.Hierarchies | None = None,
                 layers: LayerCache | None = None) -> None:
        self.fs_mountpoint = fs_mountpoint
        self._h = hierarchies
        self.rates = CpuRates()
        self.layers = layers or LayerCache()
        self.logger = log.get("stats")

    @property
    def hierarchies(self) -> cgroup.Hierarchies:
        if self._h is None:
            self._h = cgroup.hierarchies()
        return self._h

    # --- pieces -----------------------------------------------------------------------------
    def _cpu(self, key: str, s: cgroup.CgroupSample) -> pb.CpuUsage | None:
        if s.cpu_usage_ns is None:
            return None
        rate = self.rates.rate(key, s.timestamp, s.cpu_usage_ns)
        return pb.CpuUsage(timestamp=s.timestamp, usage_core_nano_seconds=_u(s.cpu_usage_ns),
                           usage_nano_cores=_u(rate))

    @staticmethod
    def _memory(s: cgroup.CgroupSample) -> pb.MemoryUsage | None:
        if s.memory_usage is None:
            return None
        m = pb.MemoryUsage(
            timestamp=s.timestamp, working_set_bytes=_u(s.working_set or 0),
            available_bytes=_u(s.available_bytes), usage_bytes=_u(s.memory_usage),
        )
        if s.rss is not None:
            m.rss_bytes.CopyFrom(_u(s.rss))
        if s.page_faults is not None:
            m.page_faults.CopyFrom(_u(s.page_faults))
        if s.major_page_faults is not None:
            m.major_page_faults.CopyFrom(_u(s.major_page_faults))
        return m

    @staticmethod
    def _swap(s: cgroup.CgroupSample) -> pb.SwapUsage | None:
        if s.swap_usage is None:
            return None
        return pb.SwapUsage(timestamp=s.timestamp, swap_usage_bytes=_u(s.swap_usage),
                            swap_available_bytes=_u(s.swap_available))

    def _layer(self, t: ContainerTarget) -> pb.FilesystemUsage | None:
        if not t.upper:
            return None
        u = self.layers.usage(t.id, t.upper)
        return pb.FilesystemUsage(
            timestamp=u.timestamp, fs_id=pb.FilesystemIdentifier(mountpoint=self.fs_mountpoint),
            used_bytes=_u(u.used_bytes), inodes_used=_u(u.inodes_used),
        )

    def _network(self, t: PodTarget, now: int) -> pb.NetworkUsage | None:
        if not t.netns:
            return None
        try:
            ifaces = network.read_netns(t.netns)
        except OSError as e:  # the pod is going away
            self.logger.debug("pod network counters unreadable", pod=t.id, error=str(e))
            return None
        usage = pb.NetworkUsage(timestamp=now)
        for i in ifaces:
            iu = pb.NetworkInterfaceUsage(
                name=i.name, rx_bytes=_u(i.rx_bytes), rx_errors=_u(i.rx_errors),
                tx_bytes=_u(i.tx_bytes), tx_errors=_u(i.tx_errors))
            usage.interfaces.append(iu)
            if i.name == network.DEFAULT_INTERFACE:
                usage.default_interface.CopyFrom(iu)
        return usage

    # --- CRI messages -----------------------------------------------------------------------
    def container_stats(self, t: ContainerTarget) -> pb.ContainerStats:
        now = time.time_ns()
        st = pb.ContainerStats(attributes=pb.ContainerAttributes(
            id=t.id, metadata=pb.ContainerMetadata(name=t.name, attempt=t.attempt),
            labels=t.labels, annotations=t.annotations))
        if t.running and t.cgroup:
            s = cgroup.read(t.cgroup, self.hierarchies, now)
            cpu, mem, swap = self._cpu(t.id, s), self._memory(s), self._swap(s)
            if cpu is not None:
                st.cpu.CopyFrom(cpu)
            if mem is not None:
                st.memory.CopyFrom(mem)
            if swap is not None:
                st.swap.CopyFrom(swap)
        layer = self._layer(t)
        if layer is not None:
            st.writable_layer.CopyFrom(layer)
        return st

    def pod_stats(self, t: PodTarget, shared: set[str]) -> pb.PodSandboxStats:
        now = time.time_ns()
        running = [c for c in t.containers if c.running]
        if t.parent in shared:
            # Sum the pod's own cgroups: the holder's and its running containers'.
            paths = [p for p in [t.cgroup, *(c.cgroup for c in running)] if p]
            s = cgroup.total([cgroup.read(p, self.hierarchies, now) for p in paths], now)
        else:
            s = cgroup.read(t.parent, self.hierarchies, now)
        linux = pb.LinuxPodSandboxStats()
        if s.found:
            cpu, mem = self._cpu(f"pod:{t.id}", s), self._memory(s)
            if cpu is not None:
                linux.cpu.CopyFrom(cpu)
            if mem is not None:
                linux.memory.CopyFrom(mem)
            if s.pids is not None:
                linux.process.CopyFrom(pb.ProcessUsage(timestamp=now,
                                                       process_count=_u(s.pids)))
        net = self._network(t, now)
        if net is not None:
            linux.network.CopyFrom(net)
        linux.containers.extend(self.container_stats(c) for c in running)
        return pb.PodSandboxStats(
            attributes=pb.PodSandboxAttributes(
                id=t.id, metadata=pb.PodSandboxMetadata(name=t.name, uid=t.uid,
                                                        namespace=t.namespace,
                                                        attempt=t.attempt),
                labels=t.labels, annotations=t.annotations),
            linux=linux,
        )

    def prune(self, live_containers: set[str]) -> None:
        """Forget the layer sizes of removed containers and CPU samples no one asks about."""
        self.layers.forget_except(live_containers)
        self.rates.forget_stale(time.time_ns())


_COLLECTORS: weakref.WeakKeyDictionary[Any, Collector] = weakref.WeakKeyDictionary()


def for_daemon(d: Daemon) -> Collector:
    """The daemon's collector (its samples live as long as the daemon). Writable layers are
    reported on the filesystem ImageFsInfo calls the containers' one, so the kubelet can
    match them."""
    c = _COLLECTORS.get(d)
    if c is None:
        c = _COLLECTORS[d] = Collector(d.images.containers_dir)
    return c
