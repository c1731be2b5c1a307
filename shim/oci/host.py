"""Facts about this node that the spec generator needs, read once at start."""

from __future__ import annotations

from podsandbox import cgroups
from shim.oci.resources import parse_id_list
from shim.oci.types import RuntimeOptions

# Capability numbers (linux/capability.h) -> names; the bounding set is a bit mask of these.
CAP_NAMES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)


def bounding_capabilities() -> frozenset[str]:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                mask = int(line.split()[1], 16)
                return frozenset(n for i, n in enumerate(CAP_NAMES) if mask >> i & 1)
    return frozenset()


def apparmor_enabled() -> bool:
    try:
        with open("/sys/module/apparmor/parameters/enabled") as f:
            return f.read().strip() == "Y"
    except OSError:
        return False


def min_oom_score_adj(caps: frozenset[str]) -> int:
    """Without CAP_SYS_RESOURCE the kernel refuses a score below the daemon's own."""
    if "CAP_SYS_RESOURCE" in caps:
        return -1000
    try:
        with open("/proc/self/oom_score_adj") as f:
            return max(0, int(f.read().strip()))
    except OSError:
        return 0


def _possible(path: str) -> int:
    try:
        with open(path) as f:
            return parse_id_list(f.read())
    except OSError:
        return 0


def runtime_options(pids_limit: int, cgroup_driver: str) -> RuntimeOptions:
    caps = bounding_capabilities()
    layout = cgroups.layout()
    return RuntimeOptions(
        cgroup_driver=cgroup_driver,
        cgroup_v2=layout.mode == "v2",
        pids_limit=pids_limit,
        host_capabilities=caps,
        apparmor_enabled=apparmor_enabled(),
        min_oom_score_adj=min_oom_score_adj(caps),
        node_cpus=_possible("/sys/devices/system/cpu/possible"),
        node_mems=_possible("/sys/devices/system/node/possible"),
    )
