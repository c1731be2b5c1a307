"""The pause-holder: Debian's static ``catatonit -P``, one per pod, owning its namespaces.

It is started with util-linux tools rather than a fork in this (multi-threaded) process:
``sh`` joins the pod cgroup and execs ``unshare``, which creates the namespaces and bind-mounts
them on the pin files (``--net=FILE``...), then ``setpriv`` drops every capability and sets
no_new_privs, and ``catatonit -P`` sleeps. With a PID namespace ``unshare`` must fork (a new
PID namespace applies to children only), so it stays as the parent of catatonit, which is
PID 1 in the pod and reaps its zombies.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time

from podsandbox import kernel
from podsandbox.types import Process
from shim.errors import Internal, trim

# Joins each cgroup given before "--", sets a non-negative OOM score, then execs the rest.
_JOIN_AND_EXEC = (
    'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; '
    'echo "$OOM" > /proc/self/oom_score_adj 2>/dev/null; exec "$@"'
)
START_TIMEOUT = 10.0


def command(
    catatonit: str, pins: dict[str, str], cgroup_procs: list[str]
) -> list[str]:
    """The argv that starts a pause-holder. Pure."""
    argv = ["/bin/sh", "-c", _JOIN_AND_EXEC, "tether-pause", *cgroup_procs, "--", "unshare"]
    for kind in ("net", "ipc", "uts", "pid"):
        if kind in pins:
            argv.append(f"--{kind}={pins[kind]}")
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
                 popen: subprocess.Popen[bytes]) -> None:
        self.holder = holder
        self.launcher = launcher
        self.popen = popen


async def start(
    catatonit: str, pins: dict[str, str], cgroup_procs: list[str], log_path: str,
    oom_score_adj: int = 0,
) -> Started:
    argv = command(catatonit, pins, cgroup_procs)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OOM": str(max(0, oom_score_adj))}
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
            start_new_session=True, close_fds=True,
        )
    try:
        holder_pid = await _wait_ready(popen, catatonit, pins, log_path)
    except BaseException:
        _kill_tree(popen.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(5)
        raise
    launcher_start = kernel.start_time(popen.pid) or 0
    holder = Process(holder_pid, kernel.start_time(holder_pid) or 0)
    launcher = None if holder_pid == popen.pid else Process(popen.pid, launcher_start)
    return Started(holder, launcher, popen)


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


async def _wait_ready(
    popen: subprocess.Popen[bytes], catatonit: str, pins: dict[str, str], log_path: str
) -> int:
    """Until catatonit runs (all pins are mounted before unshare execs or forks it)."""
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
        pids = [popen.pid, *kernel.children(popen.pid)] if "pid" in pins else [popen.pid]
        for pid in pids:
            if _exe(pid) == target and all(kernel.is_nsfs(p) for p in pins.values()):
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
