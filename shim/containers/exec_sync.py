"""ExecSync: run a command in a running container, with its output and exit code.

The runtime's ``exec`` joins the container (namespaces, cgroup, user, env, caps); we hold its
stdio. Output is capped per stream but always drained, so a chatty command cannot hang us. On
timeout the exec'd process is killed (by its pid file) while the runtime still waits for it,
so the runtime reaps it and no zombie is left in the container.
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

OUTPUT_CAP = 16 * 1024 * 1024


@dataclass(frozen=True)
class ExecResult:
    stdout: bytes
    stderr: bytes
    exit_code: int


async def _drain(stream: asyncio.StreamReader, cap: int) -> bytes:
    buf = bytearray()
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            return bytes(buf)
        room = cap - len(buf)
        if room > 0:
            buf += chunk[:room]


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
        readers = asyncio.gather(_drain(proc.stdout, cap), _drain(proc.stderr, cap))
        try:
            out, err = await asyncio.wait_for(asyncio.shield(readers), timeout or None)
            code = await proc.wait()
        except TimeoutError:
            _kill_exec(pid_path)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
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


def _kill_exec(pid_path: str) -> None:
    try:
        with open(pid_path) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
