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
from collections.abc import Iterable

from cni.errdefs import Internal, ResourceExhausted, trim
from podsandbox import kernel
from podsandbox.types import AutoRange, IDMapping, UserNamespace

_START_TIMEOUT = 10.0
# The largest id a map may name, plus one (uid_t is 32 bits; -1 means "no id").
ID_LIMIT = 2**32 - 1


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
    ``pin``. Nothing is left behind on failure but what ``namespaces.unpin`` removes."""
    proc = await asyncio.create_subprocess_exec(
        "unshare", "--user", "--", "cat",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, start_new_session=True)
    try:
        await _entered(proc)
        _write_maps(proc.pid, ns)
        kernel.mount(f"/proc/{proc.pid}/ns/user", pin, "", kernel.MS_BIND)
    except OSError as e:
        raise Internal(f"user namespace: {e.strerror or e}", detail=str(e)) from None
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def _write_maps(pid: int, ns: UserNamespace) -> None:
    # setgroups stays "allow": the maps are written by a process privileged in the parent
    # namespace, and containers need setgroups for their supplementary groups
    with open(f"/proc/{pid}/uid_map", "w") as f:
        f.write("\n".join(m.line() for m in ns.uids))
    with open(f"/proc/{pid}/gid_map", "w") as f:
        f.write("\n".join(m.line() for m in ns.gids))


async def _entered(proc: asyncio.subprocess.Process) -> None:
    """Until ``unshare`` is in a user namespace other than ours (then it execs cat)."""
    ours = os.readlink("/proc/self/ns/user")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _START_TIMEOUT
    delay = 0.0005
    while loop.time() < deadline:
        if proc.returncode is not None:
            break
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{proc.pid}/ns/user") != ours:
                return
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.005)
    err = b""
    if proc.returncode is not None and proc.stderr is not None:
        err = await proc.stderr.read()
    raise Internal(f"user namespace: unshare did not start: {trim(err.decode(errors='replace'))}")


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
        proc = subprocess.Popen(["unshare", "--user", "--", "cat"], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
    except OSError as e:
        return f"unshare: {e.strerror or e}"
    try:
        ours = os.readlink("/proc/self/ns/user")
        deadline = time.monotonic() + _START_TIMEOUT
        while proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{proc.pid}/ns/user") != ours:
                    break
            time.sleep(0.001)
        else:
            err = proc.stderr.read() if proc.stderr and proc.poll() is not None else b""
            return f"unshare --user: {trim(err.decode(errors='replace')) or 'did not start'}"
        _write_maps(proc.pid, UserNamespace(m, m))
        os.close(kernel.idmapped_clone(path, f"/proc/{proc.pid}/ns/user"))
        return ""
    except OSError as e:
        return f"{path}: {e.strerror or e}"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
