"""The CRI's container resources -> OCI ``linux.resources``; devices; the container's cgroup.

``resources_to_oci`` is also what ``runc update --resources`` / ``crun update --resources``
takes (without the device rules, which only ``generate`` adds).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from podsandbox import cgroups as pod_cgroups
from podsandbox.types import PodContext
from shim.errors import InvalidArgument
from shim.oci.types import Device, Resources, RuntimeOptions

# CRI-O's minimum: below it runc's own init may not even start in the cgroup.
MIN_MEMORY_LIMIT = 12 * 1024 * 1024
RES = "linux.resources"
CFS_MIN_US = 1000
CFS_MAX_PERIOD_US = 1_000_000
_CPUSET = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")
_PAGE_SIZE = re.compile(r"^[1-9]\d*(KB|MB|GB|TB|PB)$")

# (type, major, minor, access); -1 = any. Deny all, then the devices every container gets.
DEFAULT_DEVICE_RULES: tuple[tuple[str, int, int, str], ...] = (
    ("c", -1, -1, "m"),  # mknod of any char device (CAP_MKNOD still decides)
    ("b", -1, -1, "m"),
    ("c", 1, 3, "rwm"),  # /dev/null
    ("c", 1, 5, "rwm"),  # /dev/zero
    ("c", 1, 7, "rwm"),  # /dev/full
    ("c", 1, 8, "rwm"),  # /dev/random
    ("c", 1, 9, "rwm"),  # /dev/urandom
    ("c", 5, 0, "rwm"),  # /dev/tty
    ("c", 5, 1, "rwm"),  # /dev/console
    ("c", 5, 2, "rwm"),  # /dev/ptmx
    ("c", 136, -1, "rwm"),  # /dev/pts/*
)


def device_rule(allow: bool, typ: str, major: int, minor: int, access: str) -> dict[str, Any]:
    rule: dict[str, Any] = {"allow": allow, "type": typ, "access": access}
    if major >= 0:
        rule["major"] = major
    if minor >= 0:
        rule["minor"] = minor
    return rule


def default_device_rules(privileged: bool) -> list[dict[str, Any]]:
    if privileged:
        return [{"allow": True, "access": "rwm"}]  # type omitted: "a", all devices
    return [{"allow": False, "access": "rwm"}] + [
        device_rule(True, *r) for r in DEFAULT_DEVICE_RULES
    ]


def _check_cpuset(value: str, field: str, count: int = 0) -> str:
    """A cpu or memory-node list; with ``count`` (the node's), every id must exist."""
    v = value.strip()
    if not _CPUSET.fullmatch(v):
        raise InvalidArgument(f"{field}: {value[:64]!r} is not a cpu/node list such as '0-3,6'")
    for part in v.split(","):
        lo, _, hi = part.partition("-")
        first, last = int(lo), int(hi or lo)
        if first > last:
            raise InvalidArgument(f"{field}: {part!r} is a range that runs backwards")
        if count and last >= count:
            raise InvalidArgument(f"{field}: {last} is not on this node (it has 0-{count - 1})")
    return v


def parse_id_list(text: str) -> int:
    """``/sys/devices/system/cpu/possible`` style ``0-3,6``: the highest id + 1 (0: unknown)."""
    try:
        return max(int(p.rpartition("-")[2]) for p in text.strip().split(",")) + 1
    except ValueError:
        return 0


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):g} MiB"


def resources_to_oci(res: Resources, runtime: RuntimeOptions) -> dict[str, Any]:
    """``linux.resources`` (without devices). Raises InvalidArgument naming the CRI field."""
    out: dict[str, Any] = {}
    cpu: dict[str, Any] = {}
    if res.cpu_shares < 0 or res.cpu_period < 0 or res.cpu_quota < -1:
        raise InvalidArgument(f"{RES}: negative cpu_shares, cpu_period or cpu_quota")
    # the kernel's CFS bounds (kernel/sched/core.c): period 1 ms..1 s, quota at least 1 ms
    if res.cpu_period and not CFS_MIN_US <= res.cpu_period <= CFS_MAX_PERIOD_US:
        raise InvalidArgument(f"{RES}.cpu_period: {res.cpu_period} µs is outside "
                              f"{CFS_MIN_US}..{CFS_MAX_PERIOD_US}")
    if res.cpu_quota > 0 and res.cpu_quota < CFS_MIN_US:
        raise InvalidArgument(f"{RES}.cpu_quota: {res.cpu_quota} µs is below {CFS_MIN_US} "
                              "(-1 or 0: no quota)")
    if res.cpu_shares:
        cpu["shares"] = res.cpu_shares
    if res.cpu_quota:
        cpu["quota"] = res.cpu_quota
    if res.cpu_period:
        cpu["period"] = res.cpu_period
    if res.cpuset_cpus:
        cpu["cpus"] = _check_cpuset(res.cpuset_cpus, f"{RES}.cpuset_cpus", runtime.node_cpus)
    if res.cpuset_mems:
        cpu["mems"] = _check_cpuset(res.cpuset_mems, f"{RES}.cpuset_mems", runtime.node_mems)
    if cpu:
        out["cpu"] = cpu

    mem = res.memory_limit_in_bytes
    swap = res.memory_swap_limit_in_bytes
    if mem < 0:
        raise InvalidArgument(f"{RES}.memory_limit_in_bytes: {mem} is negative")
    if 0 < mem < MIN_MEMORY_LIMIT:
        raise InvalidArgument(
            f"{RES}.memory_limit_in_bytes: {mem} bytes ({_mib(mem)}) is below the minimum "
            f"memory limit of {_mib(MIN_MEMORY_LIMIT)}"
        )
    if mem:
        memory: dict[str, Any] = {"limit": mem}
        if swap:
            if swap != -1 and swap < mem:
                raise InvalidArgument(
                    f"{RES}.memory_swap_limit_in_bytes: {swap} is below memory_limit_in_bytes "
                    f"{mem} (it counts memory plus swap; -1 means unlimited)"
                )
            memory["swap"] = swap
        out["memory"] = memory

    pages = []
    for i, h in enumerate(res.hugepage_limits):
        if not _PAGE_SIZE.match(h.page_size):
            raise InvalidArgument(
                f"{RES}.hugepage_limits[{i}].page_size: {h.page_size!r} is not a size such as "
                f"'2MB' or '1GB'"
            )
        pages.append({"pageSize": h.page_size, "limit": h.limit})
    if pages:
        out["hugepageLimits"] = pages

    if res.unified:
        if not runtime.cgroup_v2:
            key = sorted(res.unified)[0]
            raise InvalidArgument(
                f"{RES}.unified[{key!r}]: unified (cgroup v2) settings need a cgroup v2 node; "
                f"this node uses cgroup v1"
            )
        for key in res.unified:
            if not key or "/" in key or key.startswith("."):
                raise InvalidArgument(f"{RES}.unified[{key!r}]: not a cgroup file name")
        out["unified"] = dict(sorted(res.unified.items()))

    if runtime.pids_limit > 0:
        out["pids"] = {"limit": runtime.pids_limit}
    return out


def cgroups_path(pod: PodContext, container_id: str, runtime: RuntimeOptions) -> str:
    """``linux.cgroupsPath``: the container's cgroup beside the pod's pause-holder, by the
    configured driver's rules, as the pod's own (``podsandbox.cgroups.pod_cgroup``): cgroupfs
    ``/<parent>/tether-<id>``; systemd ``/<slices expanded>/tether-<id>.scope``. Always a
    path: Tether makes a systemd driver's slices itself, as it does for the pod (no running
    systemd needed), so the runtimes are not asked for their systemd cgroup manager."""
    driver = runtime.cgroup_driver
    if driver not in pod_cgroups.DEFAULT_PARENT:
        raise InvalidArgument(f"cgroup driver {driver!r}: must be 'cgroupfs' or 'systemd'")
    return "/" + pod_cgroups.pod_cgroup(pod.cgroup_parent, driver, container_id)


def devices(
    requested: Sequence[Device],
    device_info: Mapping[str, tuple[str, int, int, int]],
    privileged: bool,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(``linux.devices``, the device cgroup rules after the defaults).

    ``device_info``: host path -> (type, major, minor, file mode), filled by the manager for
    each requested host path and, for a privileged container, every host device.
    """
    nodes: dict[str, dict[str, Any]] = {}
    rules: list[dict[str, Any]] = []

    def node(path: str, info: tuple[str, int, int, int]) -> dict[str, Any]:
        typ, major, minor, mode = info
        return {"path": path, "type": typ, "major": major, "minor": minor,
                "fileMode": mode & 0o7777, "uid": 0, "gid": 0}

    if privileged:
        for host_path, info in sorted(device_info.items()):
            nodes[host_path] = node(host_path, info)
    for i, d in enumerate(requested):
        field = f"devices[{i}]"
        if not d.host_path:
            raise InvalidArgument(f"{field}.host_path: empty")
        dest = d.container_path or d.host_path
        if not dest.startswith("/"):
            raise InvalidArgument(f"{field}.container_path {dest!r}: must be an absolute path")
        perms = d.permissions or "rwm"
        if not set(perms) <= set("rwm"):
            raise InvalidArgument(
                f"{field}.permissions {d.permissions!r}: only the letters r, w and m are allowed"
            )
        found = device_info.get(d.host_path)
        if found is None:
            raise InvalidArgument(f"{field}.host_path {d.host_path!r}: not a device on this node")
        info = found
        if info[0] not in ("c", "b", "u", "p"):
            raise InvalidArgument(f"{field}.host_path {d.host_path!r}: unknown device type")
        nodes[dest] = node(dest, info)
        if not privileged and info[0] != "p":
            access = "".join(c for c in "rwm" if c in perms)
            rules.append(device_rule(True, "b" if info[0] == "b" else "c", info[1], info[2],
                                     access))
    return list(nodes.values()), rules
