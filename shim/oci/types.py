"""Inputs of the OCI spec generator (``shim.oci.spec.generate``): everything it needs besides
the CRI messages themselves, gathered by the container manager. Frozen, so the generator is a
pure function of its arguments."""

from __future__ import annotations

from dataclasses import dataclass, field

from podsandbox.types import IDMapping, Mode


@dataclass(frozen=True)
class PodContext:
    """The pod a container joins, as the sandbox manager made it."""

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


@dataclass(frozen=True)
class RuntimeOptions:
    """Node and daemon facts the spec depends on."""

    cgroup_driver: str = "cgroupfs"  # or "systemd"
    cgroup_v2: bool = False  # True when the unified hierarchy holds the controllers
    pids_limit: int = 0  # 0: none (never -1: crun 1.8 rejects it on cgroup v1)
    # Capabilities the daemon itself holds (its bounding set): a spec may grant no others.
    host_capabilities: frozenset[str] = frozenset()
    default_capabilities: tuple[str, ...] = ()  # () = the built-in CRI-O-like default set
    apparmor_enabled: bool = False
    # AppArmor profile for RuntimeDefault (must be loaded on the node); "" = unconfined.
    apparmor_default_profile: str = ""
    seccomp_enabled: bool = True
    # Lowest oom_score_adj the kernel lets the daemon set (0 without CAP_SYS_RESOURCE).
    min_oom_score_adj: int = -1000
    # Directory of Localhost seccomp profiles (relative profile names resolve here).
    seccomp_profile_root: str = "/var/lib/kubelet/seccomp"
    # The handler can make recursive read-only mounts (shim.oci.features).
    recursive_read_only: bool = False
    # CPUs and memory nodes this node can have (highest id + 1; 0: unknown), for cpusets
    node_cpus: int = 0
    node_mems: int = 0


@dataclass(frozen=True)
class ImageFiles:
    """The image's /etc/passwd and /etc/group (read from the rootfs), for user resolution."""

    passwd: str = ""
    group: str = ""
