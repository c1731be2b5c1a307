"""Pod cgroups on cgroup v1, v2 and hybrid hosts, for the cgroupfs and systemd drivers.

The systemd driver is handled as systemd names things (``a-b-c.slice`` lives under
``a.slice/a-b.slice/``); the directories are made directly, which works whether or not systemd
is the init (it is not on every node, nor on this project's CI machines).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
from dataclasses import dataclass
from functools import lru_cache

from cni.errdefs import InvalidArgument

CGROUP_ROOT = "/sys/fs/cgroup"
DEFAULT_PARENT = {"cgroupfs": "/tether", "systemd": "tether.slice"}
_SLICE = re.compile(r"^[A-Za-z0-9_.:\\-]+\.slice$")


@dataclass(frozen=True)
class Layout:
    """Where each hierarchy is mounted: v1 controllers by name, and the v2 tree if any."""

    v1: tuple[tuple[str, str], ...]  # (controller name, mount point)
    v2: str | None

    @property
    def mode(self) -> str:
        if self.v2 and not self.v1:
            return "v2"
        return "hybrid" if self.v2 else "v1"

    def mountpoints(self) -> tuple[str, ...]:
        points = [m for _, m in self.v1]
        if self.v2:
            points.append(self.v2)
        return tuple(dict.fromkeys(points))  # co-mounted controllers share one point


@lru_cache(maxsize=1)
def layout() -> Layout:
    v1: list[tuple[str, str]] = []
    v2: str | None = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _, opts = right.split()[:3]
            point = left.split()[4]
            if fstype == "cgroup2":
                v2 = point
            elif fstype == "cgroup":
                names = [o for o in opts.split(",") if o not in ("rw", "ro", "relatime")]
                for n in names:
                    v1.append((n.removeprefix("name="), point))
    return Layout(tuple(v1), v2)


def expand_slice(name: str) -> str:
    """``kubepods-besteffort-pod1.slice`` -> ``kubepods.slice/kubepods-besteffort.slice/...``."""
    if name == "-.slice":
        return ""
    stem = name.removesuffix(".slice")
    parts = stem.split("-")
    out = []
    for i in range(1, len(parts) + 1):
        out.append("-".join(parts[:i]) + ".slice")
    return "/".join(out)


def parent_path(parent: str, driver: str) -> str:
    """The relative cgroup path of a parent (an empty parent: Tether's default). Pure."""
    return pod_cgroup(parent, driver, "x").rsplit("/", 1)[0]


def parent_name(relpath: str, driver: str) -> str:
    """The parent whose cgroup is ``relpath`` (relative to the hierarchy's root), named as
    ``driver`` names parents: ``/a/b`` for cgroupfs; for systemd the slice ``a-b.slice``
    (whose directory is ``a.slice/a-b.slice``), ``-.slice`` for the root. So
    ``pod_cgroup(parent_name(rel, d), d, id)`` is a cgroup in ``rel``. Pure."""
    if driver == "systemd":
        return relpath.rsplit("/", 1)[-1] if relpath else "-.slice"
    return "/" + relpath


def pod_cgroup(parent: str, driver: str, sandbox_id: str) -> str:
    """The cgroup of the pause-holder (``sandbox_id``) or of a container (its id) in the
    pod's ``parent``, relative to each hierarchy's root: ``<parent>/tether-<id>`` for
    cgroupfs, ``<slices expanded>/tether-<id>.scope`` for systemd. Pure: raises on bad
    input."""
    parent = parent or DEFAULT_PARENT[driver]
    if driver == "systemd":
        if not _SLICE.fullmatch(parent) or "/" in parent:
            raise InvalidArgument(
                f"linux.cgroup_parent {parent!r}: the systemd cgroup driver needs a slice name "
                f"such as 'kubepods-besteffort-pod123.slice'"
            )
        return f"{expand_slice(parent)}/tether-{sandbox_id}.scope".lstrip("/")
    if not parent.startswith("/"):
        raise InvalidArgument(
            f"linux.cgroup_parent {parent!r}: the cgroupfs driver needs an absolute path"
        )
    parts = [p for p in parent.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise InvalidArgument(f"linux.cgroup_parent {parent!r}: must not contain '.' or '..'")
    return "/".join([*parts, f"tether-{sandbox_id}"])


def _copy_cpuset(directory: str) -> None:
    """v1 cpuset: a new cgroup starts with no cpus/mems and refuses tasks until given some."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            continue
        with open(path) as f:
            if f.read().strip():
                continue
        with open(os.path.join(os.path.dirname(directory), name)) as f:
            value = f.read().strip()
        with open(path, "w") as f:
            f.write(value)


def create(relpath: str) -> tuple[list[str], list[str]]:
    """Make the cgroup in every hierarchy; return (cgroup.procs files, relpaths we created).

    Missing parents are made too (as runc does), and reported so removal can undo them. A
    concurrent removal of an empty parent (another pod's cleanup) is retried: once the leaf
    exists, its parents cannot be removed under it.
    """
    created: list[str] = []
    procs: list[str] = []
    parts = relpath.split("/")
    for point in layout().mountpoints():
        for _attempt in range(10):
            try:
                for i in range(1, len(parts) + 1):
                    rel = "/".join(parts[:i])
                    d = os.path.join(point, rel)
                    try:
                        os.mkdir(d, 0o755)
                    except FileExistsError:
                        # made by another pod that may not have given it cpus/mems yet: a
                        # child copied from an empty cpuset would refuse every task
                        _copy_cpuset(d)
                        continue
                    if rel not in created:
                        created.append(rel)
                    _copy_cpuset(d)
                break
            except FileNotFoundError:
                continue
        procs.append(os.path.join(point, relpath, "cgroup.procs"))
    return procs, created


def remove(relpath: str, created: list[str], own_parent: str = "") -> None:
    """Remove the pod's cgroup, then parents this pod created, and Tether's own default
    parent (relative path ``own_parent``), when they are empty. Parents the kubelet made are
    the kubelet's to remove."""
    rels = {relpath, *created, *([own_parent] if own_parent else [])}
    for rel in sorted(rels, key=lambda r: -r.count("/")):
        for point in layout().mountpoints():
            d = os.path.join(point, rel)
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError as e:
                # A parent another pod still uses, or a leaf with live tasks: leave it.
                if e.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                    raise


def pids_in(relpath: str) -> set[int]:
    """The processes in the cgroup, in any hierarchy that has it."""
    out: set[int] = set()
    for point in layout().mountpoints():
        with contextlib.suppress(OSError), \
                open(os.path.join(point, relpath, "cgroup.procs")) as f:
            out.update(int(p) for p in f.read().split())
    return out


def kill_all(relpath: str) -> set[int]:
    """SIGKILL whatever is left in the cgroup (v1 has no cgroup.kill); the pids signalled.
    They leave the cgroup a moment later, when they exit: until then it cannot be removed."""
    pids = pids_in(relpath)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


@dataclass(frozen=True)
class PodLimits:
    """Pod-level limits (UpdatePodSandboxResources); 0 = leave as it is."""

    memory_limit: int = 0  # bytes
    cpu_shares: int = 0
    cpu_quota: int = 0  # µs per period; -1: no quota
    cpu_period: int = 0  # µs


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return None if text in ("", "max") else int(text.split()[0])


def shares_to_weight(shares: int) -> int:
    """cgroup v1 cpu.shares (2..262144) to v2 cpu.weight (1..10000), as runc converts."""
    return 1 + ((max(2, min(shares, 262144)) - 2) * 9999) // 262142


def set_limits(relpath: str, limits: PodLimits, lay: Layout | None = None) -> None:
    """Write the limits into the cgroup ``relpath`` (v1 controllers where mounted, else the
    unified tree). A memory limit below what the pod uses now is refused (InvalidArgument)
    before anything is written."""
    lay = lay or layout()
    v1 = dict(lay.v1)
    v2 = os.path.join(lay.v2, relpath) if lay.v2 else None
    writes: list[tuple[str, str]] = []
    if limits.memory_limit:
        if "memory" in v1:
            d = os.path.join(v1["memory"], relpath)
            usage = _read_int(os.path.join(d, "memory.usage_in_bytes"))
            writes.append((os.path.join(d, "memory.limit_in_bytes"), str(limits.memory_limit)))
        elif v2:
            usage = _read_int(os.path.join(v2, "memory.current"))
            writes.append((os.path.join(v2, "memory.max"), str(limits.memory_limit)))
        else:
            usage = None
        if usage is not None and limits.memory_limit < usage:
            raise InvalidArgument(
                f"resources.memory_limit_in_bytes: {limits.memory_limit} is below what the pod "
                f"uses now ({usage} bytes)")
    if "cpu" in v1:
        d = os.path.join(v1["cpu"], relpath)
        if limits.cpu_shares:
            writes.append((os.path.join(d, "cpu.shares"), str(limits.cpu_shares)))
        if limits.cpu_period:
            writes.append((os.path.join(d, "cpu.cfs_period_us"), str(limits.cpu_period)))
        if limits.cpu_quota:
            writes.append((os.path.join(d, "cpu.cfs_quota_us"), str(limits.cpu_quota)))
    elif v2:
        if limits.cpu_shares:
            writes.append((os.path.join(v2, "cpu.weight"),
                           str(shares_to_weight(limits.cpu_shares))))
        if limits.cpu_quota or limits.cpu_period:
            quota = "max" if limits.cpu_quota in (0, -1) else str(limits.cpu_quota)
            writes.append((os.path.join(v2, "cpu.max"), f"{quota} {limits.cpu_period or 100000}"))
    for path, value in writes:
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as e:
            raise InvalidArgument(
                f"resources: the kernel refused {value!r} for {os.path.basename(path)} "
                f"({e.strerror})") from None
