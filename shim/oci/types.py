"""Inputs of the OCI spec generator (``shim.oci.spec.generate``): what a container asks
(``ContainerSpec``, made from CreateContainer by ``shim/rpc/container_convert.py``, the only
place that reads the CRI messages), and what the container manager gathers besides (the
pod's part, ``podsandbox.types.PodContext``, made by the sandbox manager; node facts; the
image's files). Frozen, so the generator is a pure function of its arguments.

The CRI's field names are kept (``run_as_user``, ``memory_limit_in_bytes``), so a message
names the field the client set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from podsandbox.types import IDMapping


class PidMode(StrEnum):
    """``namespace_options.pid`` of a container (CRI NamespaceMode names)."""

    POD = "POD"  # the pod's (its own when the pod shares none: the pod's mode CONTAINER)
    CONTAINER = "CONTAINER"
    NODE = "NODE"
    TARGET = "TARGET"  # another container's (``target_id``)


class Propagation(StrEnum):
    """A mount's propagation (CRI MountPropagation names)."""

    PRIVATE = "PROPAGATION_PRIVATE"
    HOST_TO_CONTAINER = "PROPAGATION_HOST_TO_CONTAINER"
    BIDIRECTIONAL = "PROPAGATION_BIDIRECTIONAL"


@dataclass(frozen=True)
class ImageVolume:
    """``Mount.image``: an image mounted as a volume (KEP-4639) when ``image`` is named."""

    image: str = ""
    annotations: dict[str, str] = field(default_factory=dict)
    user_specified_image: str = ""
    runtime_handler: str = ""
    image_ref: str = ""  # the image's id, once the container manager has mounted it


@dataclass(frozen=True)
class Mount:
    container_path: str
    host_path: str = ""
    readonly: bool = False
    selinux_relabel: bool = False
    propagation: Propagation = Propagation.PRIVATE
    uid_mappings: tuple[IDMapping, ...] = ()  # an idmapped mount into the pod's user namespace
    gid_mappings: tuple[IDMapping, ...] = ()
    recursive_read_only: bool = False
    image: ImageVolume | None = None  # set: the CRI message had one (an image volume if named)
    image_sub_path: str = ""
    mount_options: tuple[str, ...] = ()


@dataclass(frozen=True)
class Device:
    container_path: str
    host_path: str
    permissions: str = ""


@dataclass(frozen=True)
class HugepageLimit:
    page_size: str
    limit: int


@dataclass(frozen=True)
class Resources:
    """``linux.resources`` as the CRI asks them (CreateContainer, UpdateContainerResources)."""

    cpu_period: int = 0
    cpu_quota: int = 0
    cpu_shares: int = 0
    memory_limit_in_bytes: int = 0
    oom_score_adj: int = 0
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    hugepage_limits: tuple[HugepageLimit, ...] = ()
    unified: dict[str, str] = field(default_factory=dict)
    memory_swap_limit_in_bytes: int = 0


@dataclass(frozen=True)
class SecurityProfile:
    """A seccomp or AppArmor profile: ``kind`` "runtime", "unconfined", "localhost" or "" (none
    asked); ``ref`` the Localhost profile; ``field`` the CRI field it came from, for messages."""

    kind: str = ""
    ref: str = ""
    field: str = ""


@dataclass(frozen=True)
class Capabilities:
    add: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    add_ambient: tuple[str, ...] = ()


@dataclass(frozen=True)
class SecurityContext:
    """``linux.security_context`` of a container."""

    privileged: bool = False
    capabilities: Capabilities = Capabilities()
    pid: PidMode = PidMode.POD  # namespace_options.pid
    target_id: str = ""  # namespace_options.target_id, with TARGET
    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_username: str = ""
    readonly_rootfs: bool = False
    supplemental_groups: tuple[int, ...] = ()
    supplemental_groups_strict: bool = False  # policy Strict: no /etc/group memberships
    no_new_privs: bool = False
    masked_paths: tuple[str, ...] = ()  # () = the defaults
    readonly_paths: tuple[str, ...] = ()
    # the container's profile, else the pod's (as the kubelet's fields fall back)
    seccomp: SecurityProfile = SecurityProfile()
    apparmor: SecurityProfile = SecurityProfile()


@dataclass(frozen=True)
class PodConfig:
    """What of CreateContainer's ``sandbox_config`` a container needs: its pod's names (the
    spec's annotations)."""

    name: str = ""
    namespace: str = ""
    uid: str = ""


@dataclass(frozen=True)
class ContainerSpec:
    """What CreateContainer asks for, validated and typed."""

    name: str
    attempt: int
    image: str  # as the client named it
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    working_dir: str = ""
    envs: tuple[tuple[str, str], ...] = ()
    mounts: tuple[Mount, ...] = ()
    devices: tuple[Device, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    log_path: str = ""  # relative to the pod's log directory
    stdin: bool = False
    stdin_once: bool = False
    tty: bool = False
    stop_signal: str = ""  # "SIGTERM" and the like; "" = the image's, else SIGTERM
    resources: Resources = Resources()
    security: SecurityContext = SecurityContext()
    pod: PodConfig = PodConfig()


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
