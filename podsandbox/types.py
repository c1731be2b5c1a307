"""Typed data between the CRI layer and the sandbox manager, and the state kept in the store."""

from __future__ import annotations

import dataclasses
import json
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

    def covers(self, i: int) -> bool:
        """Whether id ``i`` of the namespace is in this range."""
        return self.container_id <= i < self.container_id + self.length


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
    privileged: bool = False  # linux.security_context.privileged
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
    create, written before the step, so undo needs nothing else. Decoded once, where the
    store reads a record (``from_dict``); read only inside ``podsandbox/``: others get views
    (``podsandbox.views``)."""

    modes: NamespaceModes = field(default_factory=NamespaceModes)
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
    log_directory: str = ""
    port_mappings: tuple[PortMapping, ...] = ()
    bandwidth: Bandwidth | None = None
    dns: DNSConfig | None = None
    userns: UserNamespace | None = None  # when modes.user is POD
    privileged: bool = False  # the pod's security context says so
    sysctls: dict[str, str] = field(default_factory=dict)  # the pod's, as asked

    def json_fields(self) -> dict[str, Any]:
        """The fields as the store writes them (its JSON encoder walks the nested ones): the
        modes by kind, as the CRI names them."""
        return {**vars(self), "modes": {k: self.modes.mode_of(k).value for k in PIN_KINDS}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SandboxDetails:
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in data.items() if k in names}
        modes = d.get("modes") or {}
        d["modes"] = NamespaceModes(
            network=Mode(modes.get("net", Mode.POD)), pid=Mode(modes.get("pid", Mode.CONTAINER)),
            ipc=Mode(modes.get("ipc", Mode.POD)), user=Mode(modes.get("user", Mode.NODE)))
        for key in ("holder", "launcher"):
            if d.get(key):
                d[key] = Process(**d[key])
        d["port_mappings"] = tuple(PortMapping(**p) for p in d.get("port_mappings") or ())
        if d.get("bandwidth"):
            d["bandwidth"] = Bandwidth(**d["bandwidth"])
        if d.get("dns"):
            d["dns"] = DNSConfig(*(tuple(d["dns"].get(k) or ()) for k in
                                   ("servers", "searches", "options")))
        if d.get("userns"):
            d["userns"] = UserNamespace.from_dict(d["userns"])
        if "config_json" in data and "privileged" not in data:
            # written before the pod's privilege and sysctls were kept on their own: the
            # whole CRI config was
            linux = cri_json_linux(data["config_json"])
            d["privileged"] = bool((linux.get("securityContext") or {}).get("privileged"))
            d["sysctls"] = {str(k): str(v) for k, v in (linux.get("sysctls") or {}).items()}
        return cls(**d)


def cri_json_linux(text: str) -> dict[str, Any]:
    """``linux`` of a CRI config as records of older versions kept it (protobuf JSON)."""
    try:
        linux = (json.loads(text) if text else {}).get("linux")
    except (ValueError, AttributeError):
        return {}
    return linux if isinstance(linux, dict) else {}


@dataclass(frozen=True)
class PodHostView:
    """Where a pod lives on the host, for readers outside podsandbox/ (stats, metrics), who
    may not read ``SandboxDetails``: ``SandboxManager.host_view`` makes it."""

    cgroup: str  # the pause-holder's, relative to each hierarchy's root
    parent: str  # the pod's cgroup parent, relative ("" when the holder sits at the root)
    netns: str | None  # the pinned network namespace; None when the pod uses the node's


@dataclass(frozen=True)
class PodContext:
    """The pod a container joins, as the sandbox manager made it: what the container manager
    and the OCI spec generator need of it (``SandboxManager.pod_context``)."""

    sandbox_id: str
    network: Mode  # POD or NODE
    ipc: Mode  # POD or NODE
    uts: Mode  # POD or NODE (NODE when network is NODE)
    pid: Mode  # POD, CONTAINER or NODE (the pod's mode; a container may ask TARGET)
    ns_paths: dict[str, str]  # kind ("net", "ipc", "uts", "pid") -> pinned path, POD kinds only
    hostname: str
    hostname_path: str  # file to bind at /etc/hostname
    resolv_conf_path: str  # file to bind at /etc/resolv.conf
    shm_path: str  # directory to bind at /dev/shm (the node's /dev/shm with host IPC)
    # The pod's cgroup parent, named as the cgroup driver names it (cgroupfs "/a/b", systemd
    # "a-b.slice"); "" = the driver's default parent.
    cgroup_parent: str
    sysctls: dict[str, str] = field(default_factory=dict)  # the pod's, applied to containers
    # The pod's own user namespace (pinned), "" when it has the node's, and its mappings
    # (runc 1.1 wants them even when it joins the namespace by path).
    userns_path: str = ""
    uid_mappings: tuple[IDMapping, ...] = ()
    gid_mappings: tuple[IDMapping, ...] = ()
    runtime_handler: str = ""
    log_directory: str = ""  # where the containers' logs go ("" = beside their bundles)


@dataclass(frozen=True)
class PodNamespace:
    kind: str  # PIN_KINDS
    mode: Mode
    path: str  # the pin; "" when the pod does not own this kind
    inode: int | None  # the pinned namespace's, as recorded


@dataclass(frozen=True)
class PodStatus:
    """What PodSandboxStatus and its verbose info report of a pod (``SandboxManager
    .status_view``), and ``tether ns`` reads from the store while the daemon is down."""

    modes: NamespaceModes
    namespaces: tuple[PodNamespace, ...]  # PIN_KINDS, in that order
    userns: UserNamespace | None
    ips: tuple[str, ...]
    holder: Process | None
    launcher: Process | None
    cgroup: str
    sandbox_dir: str
    shm_path: str
    hostname: str
    cni_network: str
    cni_result: dict[str, Any]
    port_mappings: tuple[PortMapping, ...]
    privileged: bool
