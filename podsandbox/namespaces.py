"""Namespace pins: bind mounts under ``<run>/ns/<kind>/<id>`` that keep a pod's namespaces
alive independently of any process, so CNI and the OCI runtime can join them by path."""

from __future__ import annotations

import contextlib
import os

from podsandbox import kernel
from podsandbox.types import PIN_KINDS


def pin_paths(run_dir: str, sandbox_id: str, kinds: tuple[str, ...]) -> dict[str, str]:
    return {k: os.path.join(run_dir, "ns", k, sandbox_id) for k in kinds}


def prepare(pins: dict[str, str]) -> None:
    """Create the empty files the namespaces get bind-mounted on."""
    for path in pins.values():
        os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_RDONLY | os.O_CLOEXEC, 0o444)
        os.close(fd)


def inodes(pins: dict[str, str]) -> dict[str, int]:
    return {k: os.stat(p).st_ino for k, p in pins.items() if kernel.is_nsfs(p)}


def node_inode(kind: str) -> int:
    """The namespace the daemon itself is in: what NODE mode shares."""
    return os.stat(f"/proc/self/ns/{kind}").st_ino


def unpin(pins: dict[str, str]) -> None:
    for path in pins.values():
        # A pin may be stacked if a crash interrupted an earlier unpin: unmount until bare.
        while kernel.umount(path):
            pass
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def pinned_ids(run_dir: str) -> set[str]:
    """Sandbox ids that have any pin file, mounted or not."""
    ids: set[str] = set()
    for kind in PIN_KINDS:
        with contextlib.suppress(FileNotFoundError):
            ids.update(os.listdir(os.path.join(run_dir, "ns", kind)))
    return ids
