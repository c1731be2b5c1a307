"""Process snapshots and PSS accounting (all from /proc, no external tools).

Per-pod memory overhead of a runtime (the density workload) is measured like this:

1. ``before = snapshot()`` just before the first pod is started (after the image pull, so
   pull helpers are gone); the daemon's PSS is read at the same moment.
2. The M pods are started and held running; ``after = snapshot()``.
3. New processes = keys (pid, start time) in ``after`` that are not in ``before``; the
   start time guards against pid reuse.
4. Of those, only processes *in scope* count: their network namespace is the daemon's
   (shims, conmon, helper processes run beside the daemon) or one of the pods' (pause /
   pause-holder processes live in the pod's namespace). Processes of other users of the
   machine (other test runs in other namespaces) are therefore never counted.
5. The containers' own workload processes are excluded: each container's pid from
   ContainerStatus(verbose=True) ``info["info"]`` JSON (``pid``), every descendant of such a
   pid, and, as a fallback for runtimes that do not report a pid, every process whose
   ``/proc/<pid>/cgroup`` names the container id.
6. The bench tool itself and its descendants are excluded.
7. overhead per pod = (sum of PSS of the counted processes + growth of the daemon's PSS)
   / M. PSS (``Pss:`` of ``/proc/<pid>/smaps_rollup``) splits shared pages between the
   processes mapping them, so M identical shims are not each charged their full RSS.

Kernel memory (page tables, cgroup and namespace structures, veths) is not in PSS and
is not counted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")

ProcKey = tuple[int, int]  # (pid, start time in clock ticks since boot)


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    starttime: int
    comm: str
    cmdline: str
    netns: str  # "net:[4026531840]" or "" when unreadable
    cgroup: str  # contents of /proc/<pid>/cgroup

    @property
    def key(self) -> ProcKey:
        return (self.pid, self.starttime)


@dataclass(frozen=True)
class Memory:
    pss_kb: int
    rss_kb: int


@dataclass
class Snapshot:
    procs: dict[ProcKey, ProcInfo] = field(default_factory=dict)

    def by_pid(self) -> dict[int, ProcInfo]:
        return {p.pid: p for p in self.procs.values()}


def _parse_stat(text: str) -> tuple[str, int, int]:
    """(comm, ppid, starttime) from /proc/<pid>/stat (comm may hold spaces and parens)."""
    lpar = text.index("(")
    rpar = text.rindex(")")
    comm = text[lpar + 1 : rpar]
    rest = text[rpar + 2 :].split()
    # rest[0] is field 3 (state); ppid is field 4, starttime field 22
    return comm, int(rest[1]), int(rest[19])


def read_proc(pid: int, proc_root: Path = PROC) -> ProcInfo | None:
    base = proc_root / str(pid)
    try:
        comm, ppid, start = _parse_stat((base / "stat").read_text())
    except (OSError, ValueError, IndexError):
        return None
    try:
        cmdline = (base / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        cmdline = ""
    try:
        netns = os.readlink(base / "ns" / "net")
    except OSError:
        netns = ""
    try:
        cgroup = (base / "cgroup").read_text()
    except OSError:
        cgroup = ""
    return ProcInfo(pid, ppid, start, comm, cmdline.strip(), netns, cgroup)


def list_pids(proc_root: Path = PROC) -> list[int]:
    try:
        names = os.listdir(proc_root)
    except OSError:
        return []
    return sorted(int(n) for n in names if n.isdigit())


def snapshot(proc_root: Path = PROC) -> Snapshot:
    snap = Snapshot()
    for pid in list_pids(proc_root):
        info = read_proc(pid, proc_root)
        if info is not None:
            snap.procs[info.key] = info
    return snap


_KB = re.compile(r"^(\w+):\s+(\d+)\s+kB", re.MULTILINE)


def read_memory(pid: int, proc_root: Path = PROC) -> Memory | None:
    """PSS and RSS (kB) from /proc/<pid>/smaps_rollup; None if the process is gone."""
    try:
        text = (proc_root / str(pid) / "smaps_rollup").read_text()
    except OSError:
        return None
    vals = {m.group(1): int(m.group(2)) for m in _KB.finditer(text)}
    if "Pss" not in vals:
        return None
    return Memory(pss_kb=vals["Pss"], rss_kb=vals.get("Rss", 0))


def netns_of(pid: int, proc_root: Path = PROC) -> str:
    try:
        return os.readlink(proc_root / str(pid) / "ns" / "net")
    except OSError:
        return ""


def descendants(procs: Iterable[ProcInfo], roots: Collection[int]) -> set[int]:
    """``roots`` and every pid below them (by ppid) among ``procs``."""
    children: dict[int, list[int]] = {}
    for p in procs:
        children.setdefault(p.ppid, []).append(p.pid)
    out: set[int] = set()
    todo = [r for r in roots]
    while todo:
        pid = todo.pop()
        if pid in out:
            continue
        out.add(pid)
        todo.extend(children.get(pid, ()))
    return out


@dataclass(frozen=True)
class CountedProc:
    pid: int
    comm: str
    cmdline: str
    pss_kb: int
    rss_kb: int


@dataclass
class Accounting:
    counted: list[CountedProc] = field(default_factory=list)
    workload: list[CountedProc] = field(default_factory=list)
    out_of_scope: int = 0  # new processes elsewhere on the machine (ignored)

    @property
    def pss_kb(self) -> int:
        return sum(p.pss_kb for p in self.counted)

    @property
    def rss_kb(self) -> int:
        return sum(p.rss_kb for p in self.counted)

    def by_name(self) -> dict[str, dict[str, int]]:
        """comm -> {"count", "pss_kb", "rss_kb"} of the counted processes."""
        out: dict[str, dict[str, int]] = {}
        for p in self.counted:
            e = out.setdefault(p.comm, {"count": 0, "pss_kb": 0, "rss_kb": 0})
            e["count"] += 1
            e["pss_kb"] += p.pss_kb
            e["rss_kb"] += p.rss_kb
        return out


def account(
    before: Snapshot,
    after: Snapshot,
    *,
    workload_pids: Collection[int] = (),
    workload_cgroup_markers: Collection[str] = (),
    scope_netns: Collection[str] | None = None,
    exclude_pids: Collection[int] = (),
    proc_root: Path = PROC,
) -> Accounting:
    """Sort the processes that appeared between ``before`` and ``after`` (see module doc).

    ``scope_netns``: network namespaces ("net:[N]") whose new processes count; None counts
    new processes anywhere. ``exclude_pids``: roots (with descendants) never counted, e.g.
    the bench tool itself.
    """
    all_after = list(after.procs.values())
    workload = descendants(all_after, workload_pids) if workload_pids else set()
    excluded = descendants(all_after, exclude_pids) if exclude_pids else set()
    markers = [m for m in workload_cgroup_markers if m]
    scope = set(scope_netns) if scope_netns is not None else None
    acc = Accounting()
    for key, info in sorted(after.procs.items()):
        if key in before.procs or info.pid in excluded:
            continue
        if scope is not None and info.netns not in scope:
            acc.out_of_scope += 1
            continue
        mem = read_memory(info.pid, proc_root)
        if mem is None:  # exited since the snapshot
            continue
        cp = CountedProc(info.pid, info.comm, info.cmdline, mem.pss_kb, mem.rss_kb)
        if info.pid in workload or any(m in info.cgroup for m in markers):
            acc.workload.append(cp)
        else:
            acc.counted.append(cp)
    return acc


def _squash(path: str) -> str:
    """gRPC may bind "unix:///x" as "///x": compare paths with repeated slashes squashed."""
    return re.sub("/+", "/", path)


def _unix_listen_inodes(path: str, proc_root: Path) -> set[int]:
    """Inodes of listening unix sockets bound to ``path`` (from /proc/net/unix)."""
    out: set[int] = set()
    try:
        lines = (proc_root / "net" / "unix").read_text().splitlines()[1:]
    except OSError:
        return out
    want = _squash(path)
    for line in lines:
        parts = line.split()
        # Num RefCount Protocol Flags Type St Inode [Path]
        if len(parts) >= 8 and _squash(parts[7]) == want and int(parts[3], 16) & 0x10000:
            out.add(int(parts[6]))
    return out


def pid_listening_on(path: str, proc_root: Path = PROC) -> int | None:
    """The pid of the process holding the listening unix socket ``path``.

    /proc/net/unix shows the sockets of the reader's network namespace: run this in the
    daemon's namespace. With several holders (inherited fds), the oldest process wins.
    """
    inodes = _unix_listen_inodes(path, proc_root)
    if not inodes:
        return None
    targets = {f"socket:[{i}]" for i in inodes}
    found: list[tuple[int, int]] = []
    for pid in list_pids(proc_root):
        fd_dir = proc_root / str(pid) / "fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd_dir / fd) in targets:
                    info = read_proc(pid, proc_root)
                    found.append((info.starttime if info else 0, pid))
                    break
            except OSError:
                continue
    return min(found)[1] if found else None
