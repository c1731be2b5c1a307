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
# Every kind a pod may pin: its user namespace is made first, and owns the others.
PIN_KINDS = ("user", *NS_KINDS)


@dataclass(frozen=True)
class IDMapping:
    """One range of a user namespace's uid or gid map (uid_map's columns, in its order)."""

    container_id: int
    host_id: int
    length: int

    def line(self) -> str:
        return f"{self.container_id} {self.host_id} {self.length}"


@dataclass(frozen=True)
class UserNamespace:
    """A pod's own user namespace: ids inside map to ``host_id`` + offset on the node."""

    uids: tuple[IDMapping, ...]
    gids: tuple[IDMapping, ...]
    auto: bool = False  # allocated by Tether (annotation), not given by the kubelet

    def to_dict(self) -> dict[str, Any]:
        return {"uids": [dataclasses.asdict(m) for m in self.uids],
                "gids": [dataclasses.asdict(m) for m in self.gids], "auto": self.auto}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UserNamespace:
        return cls(tuple(IDMapping(**m) for m in data["uids"]),
                   tuple(IDMapping(**m) for m in data["gids"]), bool(data.get("auto")))

    def root(self) -> tuple[int, int]:
        """The node's uid and gid of the namespace's root (validation maps id 0 first)."""
        return self.uids[0].host_id, self.gids[0].host_id

    def host_ranges(self) -> list[tuple[int, int]]:
        """[start, end) of the node's ids this namespace maps to."""
        return [(m.host_id, m.host_id + m.length) for m in (*self.uids, *self.gids)]


@dataclass(frozen=True)
class NamespaceModes:
    network: Mode = Mode.POD
    pid: Mode = Mode.CONTAINER
    ipc: Mode = Mode.POD
    user: Mode = Mode.NODE  # POD: a user namespace of the pod's own (SandboxSpec.userns)

    @property
    def uts(self) -> Mode:
        # hostNetwork pods share the node's hostname too (as the kubelet and CRI-O do).
        return Mode.NODE if self.network is Mode.NODE else Mode.POD

    def owned(self) -> tuple[str, ...]:
        """Namespace kinds the pause-holder creates and the pod pins."""
        kinds = []
        if self.user is Mode.POD:
            kinds.append("user")
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
        return {"net": self.network, "ipc": self.ipc, "uts": self.uts, "pid": self.pid,
                "user": self.user}[kind]


@dataclass(frozen=True)
class AutoRange:
    """The node ids Tether hands out to pods that ask for a user namespace by annotation
    (``io.tether.userns-mode: auto``): ``count`` blocks of ``size`` ids from ``first``."""

    first: int
    size: int
    count: int


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
    userns_auto: AutoRange | None = None  # where annotation-asked user namespaces map to
    userns_unavailable: str = ""  # why this node cannot give pods user namespaces, if not


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
    # modes.user POD: the kubelet's mappings, or None with userns_auto (Tether allocates)
    userns: UserNamespace | None = None
    userns_auto: bool = False


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
    userns: dict[str, Any] | None = None  # UserNamespace.to_dict() when modes["user"] is POD

    def user_namespace(self) -> UserNamespace | None:
        return UserNamespace.from_dict(self.userns) if self.userns else None

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
