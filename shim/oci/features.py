"""What each OCI runtime handler can do, probed once at start and reported by Status.

Recursive read-only mounts need the kernel's mount_setattr(2) (5.12+) and a runtime that
knows the ``rro`` mount option. A runtime that has ``<runtime> features`` (runc 1.1+, crun
1.9+) lists its mount options there; an older one (crun 1.8) is asked its own binary: the
option's name stands there as a string when it parses it.
"""

from __future__ import annotations

import ctypes
import errno
import json
import subprocess
from dataclasses import dataclass

_SYS_MOUNT_SETATTR = 442  # x86-64 and arm64 alike (the new syscall table)


@dataclass(frozen=True)
class HandlerFeatures:
    recursive_read_only_mounts: bool = False
    user_namespaces: bool = False


def kernel_has_mount_setattr() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    # An invalid fd: EBADF when the call exists, ENOSYS when the kernel lacks it.
    libc.syscall(_SYS_MOUNT_SETATTR, -1, b"", 0, None, 0)
    return ctypes.get_errno() != errno.ENOSYS


def runtime_mount_options(path: str) -> set[str] | None:
    """The mount options ``<path> features`` lists; None when it has no such command."""
    try:
        res = subprocess.run([path, "features"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if res.returncode != 0:
        return None
    try:
        return set(json.loads(res.stdout).get("mountOptions") or [])
    except (ValueError, AttributeError):
        return None


def binary_knows(path: str, word: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            data = f.read(64 * 1024 * 1024)
    except OSError:
        return False
    return b"\0" + word + b"\0" in data


def probe(path: str, kernel_rro: bool, userns: bool = False) -> HandlerFeatures:
    """``userns``: the node can give pods user namespaces (podsandbox.userns.probe). Every
    handler can then run in them: runc and crun join the pod's namespace by path (runc 1.1
    wants the mappings beside it, which the spec carries), and the rootfs comes idmapped."""
    opts = runtime_mount_options(path)
    knows_rro = "rro" in opts if opts is not None else binary_knows(path, b"rro")
    return HandlerFeatures(recursive_read_only_mounts=kernel_rro and knows_rro,
                           user_namespaces=userns)
