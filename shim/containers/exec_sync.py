"""ExecSync: run a command in a running container, with its output and exit code.

The runtime's ``exec`` joins the container (namespaces, cgroup, user, env, caps); we hold its
stdio. Output is always drained, so a chatty command cannot hang us, and stdout and stderr
together are capped below the kubelet's 16 MiB message limit, with a marker where they were
cut. On timeout the exec'd process and everything it started are killed while the runtime
still waits for the process: the runtime reaps it (and the kernel hands its orphans to the
container's init), so no zombie is left behind and the answer comes only once they are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import tempfile
from dataclasses import dataclass
from typing import Any

from shim.errors import DeadlineExceeded
from shim.oci.runtime import OCIRuntime

# The kubelet takes at most 16 MiB per message: output plus headroom for the rest of it.
OUTPUT_CAP = 16 * 1024 * 1024 - 64 * 1024
TRUNCATED = b"\n[output truncated by tether: over 16 MiB]\n"
REAP_WAIT = 5.0  # how long the runtime may take to reap a killed exec before it is killed


@dataclass(frozen=True)
class ExecResult:
    stdout: bytes
    stderr: bytes
    exit_code: int


class _Budget:
    """What is left of the output cap, shared by stdout and stderr."""

    def __init__(self, cap: int) -> None:
        self.left = cap - len(TRUNCATED)
        self.cut = False


async def _drain(stream: asyncio.StreamReader, budget: _Budget) -> bytes:
    buf = bytearray()
    cut = False
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            if cut:
                buf += TRUNCATED
            return bytes(buf)
        take = min(len(chunk), max(budget.left, 0))
        buf += chunk[:take]
        budget.left -= take
        if take < len(chunk) and not budget.cut:
            budget.cut = cut = True  # the marker goes once, on the stream that was cut first


async def run(runtime: OCIRuntime, container_id: str, bundle: str, process: dict[str, Any],
              timeout: float, cap: int = OUTPUT_CAP) -> ExecResult:
    fd, process_path = tempfile.mkstemp(dir=bundle, prefix="exec-", suffix=".json")
    pid_path = process_path[: -len(".json")] + ".pid"
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(process, f)
        proc = await asyncio.create_subprocess_exec(
            *runtime.argv("exec", "--process", process_path, "--pid-file", pid_path,
                          container_id),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        budget = _Budget(cap)
        readers = asyncio.gather(_drain(proc.stdout, budget), _drain(proc.stderr, budget))
        try:
            out, err = await asyncio.wait_for(asyncio.shield(readers), timeout or None)
            code = await proc.wait()
        except TimeoutError:
            killed = await kill_tree(pid_path)
            try:  # the runtime is the exec's parent: let it reap it
                await asyncio.wait_for(proc.wait(), REAP_WAIT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            await _gone(killed, REAP_WAIT)
            readers.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await readers
            raise DeadlineExceeded(
                f"ExecSync in container {container_id} timed out after {timeout:g}s; "
                f"the command was killed") from None
        return ExecResult(out, err, code)
    finally:
        for path in (process_path, pid_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
        except OSError:
            continue
    return out


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants, parents before children."""
    tree, i = [pid], 0
    while i < len(tree):
        tree += [c for c in _children(tree[i]) if c not in tree]
        i += 1
    return tree


def _stat(pid: int) -> tuple[str, int, str] | None:
    """(state, parent pid, start time) from /proc/<pid>/stat; None when there is no pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[0], int(fields[1]), fields[19]


async def kill_tree(pid_path: str, timeout: float = 2.0) -> dict[int, str]:
    """SIGKILL the exec'd process and its descendants, leaves first, so that each parent
    (a shell waiting on its children) reaps its own; the exec'd process goes last and the
    runtime reaps it. Returns {pid: start time} of those killed. Rounds repeat until the
    tree is empty (a fork meanwhile is caught next round); past ``timeout`` what is left is
    killed at once, and orphaned zombies are left to the container's init."""
    try:
        with open(pid_path) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return {}
    killed: dict[int, str] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        stats = {p: st for p in process_tree(pid) if (st := _stat(p)) is not None}
        alive = {p: st for p, st in stats.items() if st[0] != "Z"}
        if not alive:
            return killed
        late = loop.time() > deadline
        # a parent waits while it has children, dead (to reap) or alive (to be killed first)
        parents = {st[1] for st in stats.values()}
        for p, st in alive.items():
            if late or p not in parents:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
                killed[p] = st[2]
        if late:
            return killed
        await asyncio.sleep(0.01)

async def _gone(procs: dict[int, str], timeout: float) -> None:
    """Wait (bounded) until the killed processes are reaped: a pid is gone, or taken by a
    new process (another start time)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while procs and loop.time() < deadline:
        procs = {p: t for p, t in procs.items() if (st := _stat(p)) is not None and st[2] == t}
        if procs:
            await asyncio.sleep(0.02)

