"""Inputs of the OCI spec generator (``shim.oci.spec.generate``): everything it needs besides
the CRI messages themselves, gathered by the container manager (the pod's part,
``podsandbox.types.PodContext``, made by the sandbox manager). Frozen, so the generator is a
pure function of its arguments."""

from __future__ import annotations

from dataclasses import dataclass


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
