"""Linux capabilities of a container's process: the default set, CRI add/drop, privileged.

Names are the kernel's (``CAP_CHOWN``); CRI names may come with or without the prefix, in any
case. Every set is intersected with the capabilities the daemon holds (its bounding set): a
runtime asked for one the daemon lacks fails with "unable to apply caps".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shim.errors import InvalidArgument

# Index = capability number (linux/capability.h), up to CAP_CHECKPOINT_RESTORE (40).
ALL_CAPS: tuple[str, ...] = tuple(
    "CAP_" + n
    for n in (
        "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
        "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST",
        "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO",
        "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
        "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
        "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
        "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
    )
)
_NUMBER = {name: i for i, name in enumerate(ALL_CAPS)}

# CRI-O's default set.
DEFAULT_CAPS: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_SETGID", "CAP_SETUID",
    "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_KILL",
)


def normalize(name: str) -> str | None:
    """``chown`` / ``CAP_CHOWN`` / ``Cap_Chown`` -> ``CAP_CHOWN``; None when unknown."""
    n = name.strip().upper()
    if not n.startswith("CAP_"):
        n = "CAP_" + n
    return n if n in _NUMBER else None


def ordered(names: Iterable[str]) -> list[str]:
    """Kernel order, no duplicates (deterministic specs)."""
    return sorted(set(names), key=_NUMBER.__getitem__)


def _names(values: Iterable[str], field: str) -> tuple[list[str], bool]:
    """(known names, whether "ALL" was among them); unknown -> InvalidArgument."""
    out: list[str] = []
    has_all = False
    for v in values:
        if v.strip().upper() in ("ALL", "CAP_ALL"):
            has_all = True
            continue
        n = normalize(v)
        if n is None:
            raise InvalidArgument(f"{field}: unknown capability {v!r}")
        out.append(n)
    return out, has_all


@dataclass(frozen=True)
class CapSets:
    bounding: tuple[str, ...]
    effective: tuple[str, ...]
    permitted: tuple[str, ...]
    inheritable: tuple[str, ...]
    ambient: tuple[str, ...]

    def to_oci(self) -> dict[str, list[str]]:
        return {
            "bounding": list(self.bounding),
            "effective": list(self.effective),
            "permitted": list(self.permitted),
            "inheritable": list(self.inheritable),
            "ambient": list(self.ambient),
        }


def compute(
    add: Iterable[str],
    drop: Iterable[str],
    add_ambient: Iterable[str],
    *,
    privileged: bool,
    root: bool,
    host: Iterable[str],
    default: Iterable[str] = (),
    field: str = "linux.security_context.capabilities",
) -> CapSets:
    """The process capability sets.

    ``host``: names the daemon holds (empty: assume every known one). ``default``: the base set
    (empty: ``DEFAULT_CAPS``). "ALL" in add starts from every host capability, "ALL" in drop
    from none; then single adds, then single drops. A non-root user gets the set in bounding
    only (plus its ambient capabilities in every set), as Kubernetes/containerd do.
    """
    host_set = {n for n in (normalize(h) for h in host) if n} or set(ALL_CAPS)
    add_l, add_all = _names(add, f"{field}.add_capabilities")
    drop_l, drop_all = _names(drop, f"{field}.drop_capabilities")
    amb_l, _ = _names(add_ambient, f"{field}.add_ambient_capabilities")
    if privileged:
        caps = set(host_set)
    else:
        base, _ = _names(default, "default_capabilities")
        caps = set(base or DEFAULT_CAPS)
        if add_all:
            caps = set(host_set)
        if drop_all:
            caps = set()
        caps.update(add_l)
        caps.difference_update(drop_l)
    ambient = set(amb_l) & host_set
    caps = (caps | ambient) & host_set
    bounding = tuple(ordered(caps))
    amb = tuple(ordered(ambient))
    if root:
        return CapSets(bounding, bounding, bounding, amb, amb)
    return CapSets(bounding, amb, amb, amb, amb)
