"""Host environment helpers: network namespace checks, cgroup leftovers."""

from __future__ import annotations

import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def netns_inode(pid: int | str = "self") -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def _ppid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    return 0


def host_netns_inode() -> int | None:
    """PID 1's network namespace, or (where that cannot be read) the outermost readable
    ancestor's."""
    try:
        return netns_inode(1)
    except OSError:
        pass
    found: int | None = None
    pid = os.getppid()
    seen: set[int] = set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        try:
            found = netns_inode(pid)
            pid = _ppid(pid)
        except OSError:
            break
    return found


def in_private_netns() -> bool:
    host = host_netns_inode()
    return host is not None and host != netns_inode()


def cgroup_dirs(name: str, root: Path = CGROUP_ROOT) -> list[Path]:
    """``<hierarchy>/<name>`` in every mounted cgroup hierarchy under ``root``."""
    out: list[Path] = []
    if (root / "cgroup.procs").exists():  # pure cgroup v2
        cand = root / name.strip("/")
        return [cand] if cand.is_dir() else []
    try:
        hierarchies = sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return out
    for h in hierarchies:
        cand = h / name.strip("/")
        if cand.is_dir():
            out.append(cand)
    return out


def remove_empty_cgroups(name: str, root: Path = CGROUP_ROOT) -> int:
    """rmdir ``name`` and its empty descendants in every hierarchy (deepest first);
    cgroups that still hold processes stay. Returns how many were removed."""
    removed = 0
    for top in cgroup_dirs(name, root):
        dirs = [Path(d) for d, _, _ in os.walk(top)]
        for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            try:
                os.rmdir(d)
                removed += 1
            except OSError:
                pass
    return removed
