"""A pod's own user namespace: made and pinned before its pause-holder, which enters it and
creates the pod's other namespaces inside it, so that they belong to it.

Made by the daemon, not by util-linux ``unshare --user=PIN``: unshare cannot pin a user
namespace (its pinning child's bind mount fails with EPERM on this kernel) and writes a map of
more than one id only through shadow's setuid ``newuidmap``. Instead ``unshare --user cat``
holds a fresh namespace, the daemon (root in the parent namespace) writes its uid and gid maps
and bind-mounts it on the pin, and ``cat`` ends when its stdin closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import Iterable, Iterator

from cni.errdefs import Internal, ResourceExhausted, trim
from podsandbox import kernel
from podsandbox.types import AutoRange, IDMapping, UserNamespace

_START_TIMEOUT = 10.0
# The largest id a map may name, plus one (uid_t is 32 bits; -1 means "no id").
ID_LIMIT = 2**32 - 1
# The fewest ids a pod's namespace maps (as the kubelet's blocks): 0..65535.
MIN_IDS = 65536


def allocate(auto: AutoRange, used: Iterable[tuple[int, int]]) -> UserNamespace:
    """The first of ``auto``'s blocks that overlaps none of the ``used`` [start, end) host
    ranges, as a namespace mapping 0..size-1 to it for users and groups alike. Pure."""
    taken = sorted(used)
    for i in range(auto.count):
        start = auto.first + i * auto.size
        end = start + auto.size
        if all(e <= start or s >= end for s, e in taken):
            m = (IDMapping(0, start, auto.size),)
            return UserNamespace(m, m, auto=True)
    raise ResourceExhausted(
        f"no free block of {auto.size} ids left for a user namespace (userns.auto_count = "
        f"{auto.count} blocks from {auto.first}, all in use)")


async def create(pin: str, ns: UserNamespace) -> None:
    """Make a user namespace with ``ns``'s maps and bind-mount it on the (existing) file
    ``pin``. Nothing is left behind on failure but what ``namespaces.unpin`` removes. In a
    worker thread: a few blocking steps of a millisecond or so."""
    def make() -> None:
        with _held(ns) as pid:
            kernel.mount(f"/proc/{pid}/ns/user", pin, "", kernel.MS_BIND)

    try:
        await asyncio.to_thread(make)
    except OSError as e:
        raise Internal(f"user namespace: {e.strerror or e}", detail=str(e)) from None


@contextlib.contextmanager
def _held(ns: UserNamespace) -> Iterator[int]:
    """A fresh user namespace with ``ns``'s maps, held by ``unshare --user cat`` while the
    block runs: yields that process's pid. Internal when unshare cannot start."""
    proc = subprocess.Popen(["unshare", "--user", "--", "cat"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        ours = os.readlink("/proc/self/ns/user")
        deadline = time.monotonic() + _START_TIMEOUT
        delay = 0.0005
        while proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError):  # until unshare has left our namespace
                if os.readlink(f"/proc/{proc.pid}/ns/user") != ours:
                    break
            time.sleep(delay)
            delay = min(delay * 2, 0.005)
        else:
            err = proc.stderr.read() if proc.stderr and proc.poll() is not None else b""
            raise Internal("user namespace: unshare did not start: "
                           f"{trim(err.decode(errors='replace'))}")
        # setgroups stays "allow": the maps are written by a process privileged in the
        # parent namespace, and containers need setgroups for their supplementary groups
        with open(f"/proc/{proc.pid}/uid_map", "w") as f:
            f.write("\n".join(m.line() for m in ns.uids))
        with open(f"/proc/{proc.pid}/gid_map", "w") as f:
            f.write("\n".join(m.line() for m in ns.gids))
        yield proc.pid
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _parents(path: str) -> list[str]:
    out = []
    while (up := os.path.dirname(path)) != path:
        out.append(up)
        path = up
    return out


def unavailable(path: str) -> str:
    """"" when pods may have user namespaces with their containers' rootfs under ``path``,
    else why not."""
    if not os.path.exists("/proc/self/ns/user"):
        return "this kernel has no user namespaces"
    # a pod's root opens its container's rootfs, below ``path``: it must search every dir
    for d in (path, *_parents(path)):
        if os.stat(d).st_mode & 0o001 == 0:
            return f"{d} is not searchable by others (chmod o+x): a pod's root could not " \
                   "reach the rootfs of its containers"
    return ""


def idmap_unsupported(path: str) -> str:
    """"" when an idmapped mount of ``path``'s file system can be made, else why not: a
    throwaway namespace (never pinned) and an idmapped clone that is never attached."""
    m = (IDMapping(0, ID_LIMIT - 65536, 65536),)
    try:
        with _held(UserNamespace(m, m)) as pid:
            os.close(kernel.idmapped_clone(path, f"/proc/{pid}/ns/user"))
    except Internal as e:
        return e.message
    except OSError as e:
        return f"{path}: {e.strerror or e}"
    return ""
