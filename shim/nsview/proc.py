"""Namespace inodes of live processes, from ``/proc/<pid>/ns/*`` (what lsns reads)."""

from __future__ import annotations

import contextlib
import os

from podsandbox.kernel import start_time
from shim.nsview.model import KINDS


def inodes(pid: int, started: int | None = None) -> dict[str, int]:
    """kind -> inode for ``pid``; empty when it is gone, or is another process than the one
    started at ``started`` (a reused pid)."""
    if pid <= 0 or (started is not None and start_time(pid) != started):
        return {}
    out: dict[str, int] = {}
    for kind in KINDS:
        with contextlib.suppress(OSError):
            out[kind] = os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    return out


def node_inodes() -> dict[str, int]:
    """The namespaces ``tether ns`` runs in: the node's, when run where the daemon runs."""
    return inodes(os.getpid())
