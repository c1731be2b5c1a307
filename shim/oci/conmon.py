"""The conmon adapter: one monitor per container, started the way CRI-O starts it.

conmon (api version 1) daemonizes, runs ``<runtime> create``, reports the container pid on a
sync pipe, holds the container's stdio, writes the CRI log file, records the exit code in the
exit dir, and outlives the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from dataclasses import dataclass

from shim.errors import Internal, trim
from shim.oci.runtime import OCIRuntime

CREATE_TIMEOUT = 60.0
REOPEN_LOGS_EVENT = 2  # conmon's control FIFO message type


@dataclass(frozen=True)
class MonitorPaths:
    bundle: str  # holds config.json; conmon puts its ctl/winsz FIFOs here
    log_path: str  # the CRI log file
    exit_dir: str  # conmon writes <exit_dir>/<id> with the exit code
    persist_dir: str  # conmon writes "exit" and "oom" here
    socket_dir: str  # attach sockets
    container_pidfile: str
    conmon_pidfile: str


def conmon_argv(
    conmon: str, runtime: OCIRuntime, container_id: str, name: str, paths: MonitorPaths,
    tty: bool = False, stdin: bool = False, stdin_once: bool = False,
) -> list[str]:
    """The conmon command line. Pure."""
    argv = [
        conmon, "--api-version", "1",
        "--cid", container_id, "--cuuid", container_id, "--name", name,
        "--runtime", runtime.path, "--runtime-arg", f"--root={runtime.root}",
        "--bundle", paths.bundle,
        "--log-path", f"k8s-file:{paths.log_path}",
        "--exit-dir", paths.exit_dir,
        "--persist-dir", paths.persist_dir,
        "--socket-dir-path", paths.socket_dir,
        "--container-pidfile", paths.container_pidfile,
        "--conmon-pidfile", paths.conmon_pidfile,
        "--log-level", "error",
    ]
    if tty:
        argv.append("--terminal")
    if stdin:
        argv.append("--stdin")
        if not stdin_once:
            argv.append("--leave-stdin-open")
    return argv


@dataclass(frozen=True)
class Monitored:
    container_pid: int
    conmon_pid: int


def _read_pid(path: str) -> int:
    with open(path) as f:
        return int(f.read().strip())


async def create(argv: list[str], paths: MonitorPaths) -> Monitored:
    """Start conmon (which runs ``runtime create``) and wait for the container's pid."""
    sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
    start_r, start_w = os.pipe2(os.O_CLOEXEC)
    stderr_path = os.path.join(paths.bundle, "conmon.log")
    try:
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "_OCI_SYNCPIPE": str(sync_w), "_OCI_STARTPIPE": str(start_r),
        }
        with open(stderr_path, "ab") as err:
            popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env,
                pass_fds=(sync_w, start_r), start_new_session=True,
                cwd=paths.bundle,  # conmon writes some files (e.g. "oom") to its cwd
            )
        os.close(sync_w)
        os.close(start_r)
        sync_w = start_r = -1
        os.write(start_w, b"0")  # let conmon go on (a caller may move it to a cgroup first)
        os.close(start_w)
        start_w = -1
        # The first conmon process exits once the monitor has daemonized.
        await asyncio.get_running_loop().run_in_executor(None, popen.wait)
        line = await asyncio.wait_for(_read_line(sync_r), CREATE_TIMEOUT)
    finally:
        for fd in (sync_r, sync_w, start_r, start_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
    try:
        msg = json.loads(line) if line else {}
    except ValueError:
        msg = {"data": -1, "message": line}
    pid = int(msg.get("data", -1))
    if pid <= 0:
        said = msg.get("message") or _read_text(stderr_path) or "conmon exited without a pid"
        raise Internal(f"container create failed: {trim(said)}", detail=said)
    return Monitored(pid, _read_pid(paths.conmon_pidfile))


async def _read_line(fd: int) -> str:
    loop = asyncio.get_running_loop()

    def read() -> str:
        data = b""
        while not data.endswith(b"\n"):
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
        return data.decode(errors="replace").strip()

    return await loop.run_in_executor(None, read)


def _read_text(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""


def reopen_logs(bundle: str) -> None:
    """Ask conmon to reopen the log file (after the kubelet rotated it)."""
    fd = os.open(os.path.join(bundle, "ctl"), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        os.write(fd, f"{REOPEN_LOGS_EVENT} 0 0\n".encode())
    finally:
        os.close(fd)
