"""Typed stats samples: what ``Collector`` reads for one container or pod, before the RPC
edge (shim/rpc/stats_convert.py) turns them into CRI messages. One dataclass per CRI usage
message, with the same fields; ``None`` where the CRI message leaves a field unset."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ContainerTarget:
    """A container as the collector needs it, taken from its record on the event loop."""

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


@dataclass(frozen=True)
class Cpu:
    timestamp: int  # ns since the epoch
    usage_core_ns: int
    usage_nano_cores: int  # 0 until a second sample gives a rate


@dataclass(frozen=True)
class Memory:
    timestamp: int
    working_set_bytes: int
    available_bytes: int
    usage_bytes: int
    rss_bytes: int | None = None
    page_faults: int | None = None
    major_page_faults: int | None = None


@dataclass(frozen=True)
class Swap:
    timestamp: int
    usage_bytes: int
    available_bytes: int


@dataclass(frozen=True)
class Filesystem:
    timestamp: int
    mountpoint: str
    used_bytes: int
    inodes_used: int


@dataclass(frozen=True)
class Interface:
    name: str
    rx_bytes: int
    rx_errors: int
    tx_bytes: int
    tx_errors: int


@dataclass(frozen=True)
class Network:
    timestamp: int
    interfaces: tuple[Interface, ...]
    default: Interface | None  # the pod's eth0, when it has one


@dataclass(frozen=True)
class Processes:
    timestamp: int
    count: int


@dataclass(frozen=True)
class ContainerSample:
    target: ContainerTarget  # the attributes: id, name, attempt, labels, annotations
    cpu: Cpu | None = None
    memory: Memory | None = None
    swap: Swap | None = None
    writable_layer: Filesystem | None = None


@dataclass(frozen=True)
class PodSample:
    target: PodTarget
    cpu: Cpu | None = None
    memory: Memory | None = None
    processes: Processes | None = None
    network: Network | None = None
    containers: tuple[ContainerSample, ...] = ()  # its running containers'
