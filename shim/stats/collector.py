"""ContainerStats / PodSandboxStats samples from store records and the host's counters.

Records are turned into plain targets on the event loop (``container_target``,
``pod_target``); ``Collector`` then reads the counters, typically in a worker thread, and
keeps what must outlive a call: the previous CPU samples and the writable-layer sizes. It
returns typed samples (shim.stats.samples); shim/rpc/stats_convert.py makes CRI messages of
them. The daemon builds one collector and keeps it for its lifetime.
"""

from __future__ import annotations

import time
from typing import Any

from podsandbox import cgroups as pod_cgroups
from podsandbox.types import PodHostView
from shim import log
from shim.containers.types import CState
from shim.containers.views import host_view
from shim.stats import cgroup, network
from shim.stats.layer import LayerCache
from shim.stats.rates import CpuRates
from shim.stats.samples import (
    ContainerSample,
    ContainerTarget,
    Cpu,
    Filesystem,
    Interface,
    Memory,
    Network,
    PodSample,
    PodTarget,
    Processes,
    Swap,
)
from shim.store import ContainerRecord


def cgroup_relpath(path: str) -> str:
    """``linux.cgroupsPath`` relative to the hierarchy roots: cgroupfs ``/a/b`` or systemd
    ``<slice>:<prefix>:<name>`` (``<slice expanded>/<prefix>-<name>.scope``)."""
    if ":" in path and not path.startswith("/"):
        slice_, prefix, name = [*path.split(":"), "", ""][:3]
        leaf = f"{prefix}-{name}.scope" if prefix else f"{name}.scope"
        return "/".join(p for p in (pod_cgroups.expand_slice(slice_), leaf) if p)
    return path.strip("/")


def container_target(rec: ContainerRecord) -> ContainerTarget:
    v = host_view(rec)
    return ContainerTarget(
        id=rec.id, sandbox_id=rec.sandbox_id, name=rec.name, attempt=rec.attempt,
        labels=dict(rec.labels), annotations=dict(rec.annotations),
        running=rec.state is CState.RUNNING,
        cgroup=cgroup_relpath(v.cgroup_path), upper=v.upper,
    )


def pod_target(rec: Any, host: PodHostView, containers: list[ContainerTarget]) -> PodTarget:
    """``host``: where the pod lives, as the sandbox manager tells (its details are its own)."""
    return PodTarget(
        id=rec.id, name=rec.name, uid=rec.uid, namespace=rec.namespace, attempt=rec.attempt,
        labels=dict(rec.labels), annotations=dict(rec.annotations), cgroup=host.cgroup,
        parent=host.parent, netns=host.netns, containers=containers,
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


def _clamp(v: int) -> int:
    return max(int(v), 0)


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
    def _cpu(self, key: str, s: cgroup.CgroupSample) -> Cpu | None:
        if s.cpu_usage_ns is None:
            return None
        rate = self.rates.rate(key, s.timestamp, s.cpu_usage_ns)
        return Cpu(timestamp=s.timestamp, usage_core_ns=_clamp(s.cpu_usage_ns),
                   usage_nano_cores=_clamp(rate))

    @staticmethod
    def _memory(s: cgroup.CgroupSample) -> Memory | None:
        if s.memory_usage is None:
            return None
        return Memory(
            timestamp=s.timestamp, working_set_bytes=_clamp(s.working_set or 0),
            available_bytes=_clamp(s.available_bytes), usage_bytes=_clamp(s.memory_usage),
            rss_bytes=None if s.rss is None else _clamp(s.rss),
            page_faults=None if s.page_faults is None else _clamp(s.page_faults),
            major_page_faults=None if s.major_page_faults is None
            else _clamp(s.major_page_faults),
        )

    @staticmethod
    def _swap(s: cgroup.CgroupSample) -> Swap | None:
        if s.swap_usage is None:
            return None
        return Swap(timestamp=s.timestamp, usage_bytes=_clamp(s.swap_usage),
                    available_bytes=_clamp(s.swap_available))

    def _layer(self, t: ContainerTarget) -> Filesystem | None:
        if not t.upper:
            return None
        u = self.layers.usage(t.id, t.upper)
        return Filesystem(timestamp=u.timestamp, mountpoint=self.fs_mountpoint,
                          used_bytes=_clamp(u.used_bytes), inodes_used=_clamp(u.inodes_used))

    def _network(self, t: PodTarget, now: int) -> Network | None:
        if not t.netns:
            return None
        try:
            ifaces = network.read_netns(t.netns)
        except OSError as e:  # the pod is going away
            self.logger.debug("pod network counters unreadable", pod=t.id, error=str(e))
            return None
        out = tuple(Interface(name=i.name, rx_bytes=_clamp(i.rx_bytes),
                              rx_errors=_clamp(i.rx_errors), tx_bytes=_clamp(i.tx_bytes),
                              tx_errors=_clamp(i.tx_errors)) for i in ifaces)
        default = next((i for i in out if i.name == network.DEFAULT_INTERFACE), None)
        return Network(timestamp=now, interfaces=out, default=default)

    # --- samples ----------------------------------------------------------------------------
    def container_stats(self, t: ContainerTarget) -> ContainerSample:
        now = time.time_ns()
        cpu = mem = swap = None
        if t.running and t.cgroup:
            s = cgroup.read(t.cgroup, self.hierarchies, now)
            cpu, mem, swap = self._cpu(t.id, s), self._memory(s), self._swap(s)
        return ContainerSample(target=t, cpu=cpu, memory=mem, swap=swap,
                               writable_layer=self._layer(t))

    def pod_stats(self, t: PodTarget, shared: set[str]) -> PodSample:
        now = time.time_ns()
        running = [c for c in t.containers if c.running]
        if t.parent in shared:
            # Sum the pod's own cgroups: the holder's and its running containers'.
            paths = [p for p in [t.cgroup, *(c.cgroup for c in running)] if p]
            s = cgroup.total([cgroup.read(p, self.hierarchies, now) for p in paths], now)
        else:
            s = cgroup.read(t.parent, self.hierarchies, now)
        cpu = mem = procs = None
        if s.found:
            cpu, mem = self._cpu(f"pod:{t.id}", s), self._memory(s)
            if s.pids is not None:
                procs = Processes(timestamp=now, count=_clamp(s.pids))
        return PodSample(target=t, cpu=cpu, memory=mem, processes=procs,
                         network=self._network(t, now),
                         containers=tuple(self.container_stats(c) for c in running))

    def prune(self, live_containers: set[str]) -> None:
        """Forget the layer sizes of removed containers and CPU samples no one asks about."""
        self.layers.forget_except(live_containers)
        self.rates.forget_stale(time.time_ns())
