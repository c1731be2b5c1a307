"""The pause-holder: Debian's static ``catatonit -P``, one per pod, owning its namespaces.

It is started with util-linux tools rather than a fork in this (multi-threaded) process:
``sh`` joins the pod cgroup and execs ``unshare``, which creates the namespaces and bind-mounts
them on the pin files (``--net=FILE``...), then ``setpriv`` drops every capability and sets
no_new_privs, and ``catatonit -P`` sleeps. With a PID namespace ``unshare`` must fork (a new
PID namespace applies to children only), so it stays as the parent of catatonit, which is
PID 1 in the pod and reaps its zombies.

A pod with a user namespace of its own (made and pinned first, see userns.py): ``sh`` execs
``nsenter --user=PIN`` (which becomes the namespace's root: the node's mapped id), and then
``unshare``, so the new namespaces belong to the pod's user namespace. Their pins are mounted
by the daemon once catatonit runs: unshare's pinning child would be inside the user
namespace, without the right to mount on the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time

from cni.errdefs import Internal, trim
from podsandbox import kernel
from podsandbox.types import Process

# Joins each cgroup given before "--", sets a non-negative OOM score, then execs the rest.
# A v1 hierarchy is joined by writing "0" to its "tasks" file: that moves only the calling
# thread (sh has one), for which the kernel skips the global cgroup_threadgroup_rwsem. Writing
# a pid to cgroup.procs takes it for writing, which waits for an RCU grace period when no
# other cgroup migration happened just before (~10 ms on a 2-vCPU VM: most of the start).
_JOIN_AND_EXEC = (
    'while [ "$1" != -- ]; do t="${1%/cgroup.procs}/tasks"; '
    '{ [ -e "$t" ] && echo 0 2>/dev/null > "$t"; } || echo $$ > "$1" || exit 125; '
    'shift; done; shift; '
    'echo "$OOM" > /proc/self/oom_score_adj 2>/dev/null; exec "$@"'
)
START_TIMEOUT = 10.0


def command(
    catatonit: str, pins: dict[str, str], cgroup_procs: list[str]
) -> list[str]:
    """The argv that starts a pause-holder. Pure."""
    argv = ["/bin/sh", "-c", _JOIN_AND_EXEC, "tether-pause", *cgroup_procs, "--"]
    if "user" in pins:
        # uid and gid 0 inside; the daemon pins the namespaces (see the module's doc)
        argv += ["nsenter", f"--user={pins['user']}", "--", "unshare"]
        argv += [f"--{kind}" for kind in ("net", "ipc", "uts", "pid") if kind in pins]
    else:
        argv.append("unshare")
        argv += [f"--{kind}={pins[kind]}" for kind in ("net", "ipc", "uts", "pid")
                 if kind in pins]
    if "pid" in pins:
        argv += ["--fork", "--kill-child"]
    argv += [
        "--",
        "setpriv", "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--",
        catatonit, "-P",
    ]
    return argv


class Started:
    """A started pause-holder, with the Popen of its launcher while it is our child."""

    def __init__(self, holder: Process, launcher: Process | None,
                 popen: subprocess.Popen[bytes],
                 joining: asyncio.Future[None] | None = None) -> None:
        self.holder = holder
        self.launcher = launcher
        self.popen = popen
        self._joining = joining

    async def settled(self) -> None:
        """Wait until the pause-holder is in every cgroup (only ``start(defer_join=True)``
        can return earlier). Raises Internal if the late join failed. Idempotent."""
        if self._joining is None:
            return
        try:
            await asyncio.shield(self._joining)
        except OSError as exc:
            raise Internal(f"pause-holder could not join its cgroup: {exc.strerror or exc}",
                           detail=f"pid {self.holder.pid}") from None


def split_late(cgroup_procs: list[str]) -> tuple[list[str], list[str]]:
    """(joined by the launcher itself, joined by the daemon while the launcher starts).

    On a hybrid host the v2 tree is joined late when it has no controllers (nothing is
    accounted or limited there, it only groups): the launcher joins every v1 hierarchy from
    its first instruction as before (through "tasks", without the grace period, see
    _JOIN_AND_EXEC), and the daemon moves the holder into the v2 cgroup once it runs. With
    ``start(defer_join=True)`` that write's grace period overlaps the caller's next steps
    (CNI ADD) instead of adding to the start.
    """
    v1 = [p for p in cgroup_procs if os.path.exists(os.path.join(os.path.dirname(p), "tasks"))]
    if not v1:
        return list(cgroup_procs), []
    late = [p for p in cgroup_procs if p not in v1 and not _controllers(p)]
    return [p for p in cgroup_procs if p not in late], late


def _controllers(procs_file: str) -> str:
    try:
        with open(os.path.join(os.path.dirname(procs_file), "cgroup.controllers")) as f:
            return f.read().strip()
    except OSError:
        return "?"  # unknown: join early, as everywhere else


def _join(procs_files: list[str], pids: list[int]) -> None:
    for path in procs_files:
        for pid in pids:
            with open(path, "w") as f:
                f.write(str(pid))


async def start(
    catatonit: str, pins: dict[str, str], cgroup_procs: list[str], log_path: str,
    oom_score_adj: int = 0, defer_join: bool = False,
) -> Started:
    """Start a pause-holder and wait until catatonit runs with every pin mounted.

    ``defer_join``: return as soon as it runs, while the late cgroup join (see split_late)
    may still be in flight; the caller must ``await started.settled()`` before the pod is
    reported ready and before tearing it down (the namespaces are usable at once).
    """
    early, late = split_late(cgroup_procs)
    argv = command(catatonit, pins, early)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OOM": str(max(0, oom_score_adj))}
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
            start_new_session=True, close_fds=True,
        )
    joining: asyncio.Future[None] | None = None
    # pinned by unshare before it execs catatonit, or (user namespace) by us after
    by_us = {k: p for k, p in pins.items() if k != "user"} if "user" in pins else {}
    try:
        holder_pid = await _wait_ready(popen, catatonit, "pid" in pins,
                                       [] if by_us else list(pins.values()), log_path)
        try:
            for kind, path in by_us.items():
                kernel.mount(f"/proc/{holder_pid}/ns/{kind}", path, "", kernel.MS_BIND)
        except OSError as e:
            raise Internal(f"pause-holder: pinning its namespaces: {e.strerror or e}") from None
        if late:
            # After the launcher is up: the write holds cgroup_mutex for its grace period,
            # which would stall the launcher's own joins (and every cgroup mkdir/rmdir).
            pids = [popen.pid] if holder_pid == popen.pid else [popen.pid, holder_pid]
            joining = asyncio.get_running_loop().run_in_executor(None, _join, late, pids)
            if not defer_join:
                await joining
    except BaseException as exc:
        _kill_tree(popen.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(5)
        if joining is not None:
            with contextlib.suppress(Exception):
                await joining
        if isinstance(exc, OSError):
            raise Internal(f"pause-holder could not join its cgroup: {exc.strerror or exc}",
                           detail=_read(log_path)) from None
        raise
    launcher_start = kernel.start_time(popen.pid) or 0
    holder = Process(holder_pid, kernel.start_time(holder_pid) or 0)
    launcher = None if holder_pid == popen.pid else Process(popen.pid, launcher_start)
    return Started(holder, launcher, popen, joining)


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


async def _wait_ready(
    popen: subprocess.Popen[bytes], catatonit: str, forks: bool, pinned: list[str],
    log_path: str,
) -> int:
    """Until catatonit runs (a child of unshare when ``forks``) and the ``pinned`` files are
    mounted (unshare mounts its pins before it execs or forks catatonit)."""
    target = os.path.realpath(catatonit)
    deadline = time.monotonic() + START_TIMEOUT
    delay = 0.0005
    while time.monotonic() < deadline:
        rc = popen.poll()
        if rc is not None:
            raise Internal(
                f"pause-holder failed to start (exit {rc}): {trim(_read(log_path))}",
                detail=_read(log_path),
            )
        pids = [popen.pid, *kernel.children(popen.pid)] if forks else [popen.pid]
        for pid in pids:
            if _exe(pid) == target and all(kernel.is_nsfs(p) for p in pinned):
                return pid
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.002)
    raise Internal(f"pause-holder did not start within {START_TIMEOUT}s: {trim(_read(log_path))}")


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _kill_tree(pid: int) -> None:
    for child in kernel.children(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


async def stop(holder: Process | None, launcher: Process | None, timeout: float = 10.0) -> None:
    """SIGKILL the pause-holder (catatonit ignores SIGTERM as PID 1; unshare ignores it while
    it waits), then its launcher. Idempotent; a reused pid is never hit.

    The holder goes first so that unshare, its parent, reaps it and exits by itself: killing
    both at once would orphan catatonit to init, which reaps only every few seconds."""
    for p in (holder, launcher):
        if p is None or not kernel.alive(p.pid, p.start_time):
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while kernel.alive(p.pid, p.start_time):
            if time.monotonic() > deadline:
                raise Internal(f"pause-holder pid {p.pid} did not die after SIGKILL")
            await asyncio.sleep(0.001)
