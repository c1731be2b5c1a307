"""Typed data between the CRI layer and the sandbox manager, and the state kept in the store."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cni.types import Bandwidth, DNSConfig, PortMapping


class Mode(StrEnum):
    """Namespace mode of a pod, as the CRI NamespaceMode names it."""

    POD = "POD"  # a namespace of the pod's own, held by the pause-holder
    CONTAINER = "CONTAINER"  # PID only: each container its own
    NODE = "NODE"  # the node's namespace


class State(StrEnum):
    CREATING = "creating"  # RunPodSandbox under way
    READY = "ready"
    STOPPING = "stopping"  # StopPodSandbox under way
    NOTREADY = "notready"
    REMOVING = "removing"


# Kinds of namespace the pause-holder may own, in the order they are created.
NS_KINDS = ("net", "ipc", "uts", "pid")


@dataclass(frozen=True)
class NamespaceModes:
    network: Mode = Mode.POD
    pid: Mode = Mode.CONTAINER
    ipc: Mode = Mode.POD

    @property
    def uts(self) -> Mode:
        # hostNetwork pods share the node's hostname too (as the kubelet and CRI-O do).
        return Mode.NODE if self.network is Mode.NODE else Mode.POD

    def owned(self) -> tuple[str, ...]:
        """Namespace kinds the pause-holder creates and the pod pins."""
        kinds = []
        if self.network is Mode.POD:
            kinds.append("net")
        if self.ipc is Mode.POD:
            kinds.append("ipc")
        if self.uts is Mode.POD:
            kinds.append("uts")
        if self.pid is Mode.POD:
            kinds.append("pid")
        return tuple(kinds)

    def mode_of(self, kind: str) -> Mode:
        return {"net": self.network, "ipc": self.ipc, "uts": self.uts, "pid": self.pid}[kind]


@dataclass(frozen=True)
class SandboxConfig:
    """What the sandbox manager needs of Tether's config, built by the daemon from
    ``shim.config`` (which ``podsandbox/`` may not import). Runtime keys are not live, so a
    snapshot at start is the whole truth."""

    run_dir: str
    handlers: frozenset[str]  # runtime handlers a pod may ask for
    cgroup_driver: str  # cgroupfs | systemd
    default_cgroup_parent: str  # for pods whose config names none; "" for Tether's own
    pause_holder: str  # path of catatonit


@dataclass(frozen=True)
class SandboxSpec:
    """What RunPodSandbox asks for, validated and typed."""

    name: str
    namespace: str
    uid: str
    attempt: int
    hostname: str
    log_directory: str
    runtime_handler: str
    modes: NamespaceModes
    cgroup_parent: str
    sysctls: tuple[tuple[str, str], ...]
    dns: DNSConfig | None
    port_mappings: tuple[PortMapping, ...]
    bandwidth: Bandwidth | None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    # The whole CRI config, serialised, for containers created in this pod later.
    config_json: str = ""


@dataclass
class Process:
    """A process by identity: pid plus start time (clock ticks), so a reused pid never fools us."""

    pid: int
    start_time: int


@dataclass
class SandboxDetails:
    """What the manager keeps in ``SandboxRecord.details``: every path and process a step may
    create, written before the step, so undo needs nothing else."""

    modes: dict[str, str] = field(default_factory=dict)  # kind -> POD/NODE/CONTAINER
    pins: dict[str, str] = field(default_factory=dict)  # kind -> pinned path
    inodes: dict[str, int] = field(default_factory=dict)  # kind -> namespace inode
    stopped: bool = False  # StopPodSandbox completed (NOTREADY alone may mean a dead holder)
    holder: Process | None = None  # catatonit
    launcher: Process | None = None  # util-linux unshare when it forked for a PID namespace
    cgroup: str = ""  # relative cgroup path of the pause-holder
    cgroup_created: list[str] = field(default_factory=list)  # relative paths we made, deepest last
    sandbox_dir: str = ""
    shm_path: str = ""
    hostname: str = ""
    cni_network: str = ""
    ips: list[str] = field(default_factory=list)
    cni_result: dict[str, Any] = field(default_factory=dict)
    config_json: str = ""
    log_directory: str = ""
    port_mappings: list[dict[str, Any]] = field(default_factory=list)
    bandwidth: dict[str, int] | None = None
    dns: dict[str, list[str]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SandboxDetails:
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in data.items() if k in names}
        for key in ("holder", "launcher"):
            if d.get(key):
                d[key] = Process(**d[key])
        return cls(**d)


@dataclass(frozen=True)
class PodHostView:
    """Where a pod lives on the host, for readers outside podsandbox/ (stats, metrics), who
    may not read ``SandboxDetails``: ``SandboxManager.host_view`` makes it."""

    cgroup: str  # the pause-holder's, relative to each hierarchy's root
    parent: str  # the pod's cgroup parent, relative ("" when the holder sits at the root)
    netns: str | None  # the pinned network namespace; None when the pod uses the node's
