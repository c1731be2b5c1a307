"""Disk usage of a directory tree the way ``du -x`` counts it: blocks and inodes, each
hardlinked inode once, not crossing into other filesystems (container rootfs mounts)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass


@dataclass(frozen=True)
class Usage:
    path: str
    timestamp: int  # ns since the epoch, when measured
    used_bytes: int
    inodes_used: int


def measure(path: str, now_ns: int) -> Usage:
    try:
        top = os.lstat(path)
    except FileNotFoundError:
        return Usage(path, now_ns, 0, 0)
    seen: set[tuple[int, int]] = {(top.st_dev, top.st_ino)}
    used = top.st_blocks * 512
    stack = [path] if stat.S_ISDIR(top.st_mode) else []
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if st.st_dev != top.st_dev:
                    continue
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
                used += st.st_blocks * 512
                if stat.S_ISDIR(st.st_mode):
                    stack.append(e.path)
    return Usage(path, now_ns, used, len(seen))
