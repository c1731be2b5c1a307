"""Does a container's command exist in its image? Looked up inside the rootfs the way the
kernel will (symlinks followed, an absolute link taken from the rootfs's root, never out of
it), so a typo is InvalidArgument at CreateContainer instead of runtime text at start."""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Iterable

_MAX_LINKS = 40  # the kernel's limit on symlinks in one lookup


def resolve_in_root(root: str, path: str) -> str | None:
    """The host path ``path`` (absolute, inside the container) names under ``root``, links
    followed within root; None when a component is missing or the chain is too long."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    links = 0
    while parts:
        comp = parts.pop(0)
        if comp == "..":
            if done:
                done.pop()
            continue
        host = os.path.join(root, *done, comp)
        try:
            st = os.lstat(host)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > _MAX_LINKS:
                return None
            target = os.readlink(host)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        done.append(comp)
    return os.path.join(root, *done)


def _under(path: str, dests: Iterable[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in dests)


def command_exists(rootfs: str, command: str, env: list[str], cwd: str,
                   mounts: Iterable[str]) -> bool:
    """True when ``command`` (argv[0]) is a file in the image, or may come from a mount
    (``mounts``: the container paths of the CRI mounts, which cannot be checked here)."""
    dests = list(mounts)
    if "/" in command:
        path = posixpath.normpath(posixpath.join(cwd or "/", command))
        if _under(path, dests):
            return True
        found = resolve_in_root(rootfs, path)
        return found is not None and os.path.isfile(found)
    search = next((e[5:] for e in env if e.startswith("PATH=")), "")
    for d in search.split(":"):
        if not d.startswith("/"):
            continue
        path = posixpath.join(d, command)
        if _under(path, dests):
            return True
        found = resolve_in_root(rootfs, path)
        if found is not None and os.path.isfile(found):
            return True
    return False
