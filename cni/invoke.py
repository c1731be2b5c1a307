"""Finding and executing one CNI plugin binary: environment, stdin, timeout, error decoding."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from cni.errdefs import DeadlineExceeded, FailedPrecondition, Internal, trim
from cni.errors import plugin_error

log = structlog.get_logger(component="cni")

MINIMAL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_BUSY_RETRIES = 5  # libcni retries a plugin that is being written ("text file busy")
_REAP_TIMEOUT = 5.0


def find_plugin(plugin_type: str, plugin_dirs: Sequence[str]) -> str:
    """The first ``<dir>/<type>`` that is a file, searching ``plugin_dirs`` in order."""
    if plugin_type and "/" not in plugin_type:
        for d in plugin_dirs:
            candidate = os.path.join(d, plugin_type)
            if os.path.isfile(candidate):
                return candidate
    raise FailedPrecondition(
        f'CNI plugin "{plugin_type}" not found in {", ".join(plugin_dirs) or "(no plugin dirs)"}')


@dataclass(frozen=True)
class Invocation:
    """The environment side of one plugin call (libcni's ``invoke.Args``)."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    cni_args: str = ""
    cni_path: str = ""

    def env(self) -> dict[str, str]:
        return {
            "PATH": MINIMAL_PATH,
            "CNI_COMMAND": self.command,
            "CNI_CONTAINERID": self.container_id,
            "CNI_NETNS": self.netns,
            "CNI_IFNAME": self.ifname,
            "CNI_ARGS": self.cni_args,
            "CNI_PATH": self.cni_path,
        }


def _failure(plugin: str, command: str, returncode: int, stdout: bytes, stderr: bytes) -> Exception:
    out = stdout.decode(errors="replace").strip()
    err = stderr.decode(errors="replace").strip()
    detail = "\n".join(x for x in (f"stdout: {out}" if out else "",
                                   f"stderr: {err}" if err else "") if x) or None
    if out:
        try:
            obj = json.loads(out)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("code"), int):
            return plugin_error(plugin, command, code=obj["code"], msg=str(obj.get("msg", "")),
                                details=str(obj.get("details", "") or ""), detail=detail)
    status = (f"killed by signal {-returncode}" if returncode < 0
              else f"exit status {returncode}")
    said = trim(err or out)
    return plugin_error(plugin, command, code=None,
                        msg=f"{status}: {said}" if said else f"{status}, no error message",
                        detail=detail)


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    # The plugin runs in its own session, so its helpers (iptables, IPAM plugins) die with it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def _spawn(path: str, plugin: str, inv: Invocation) -> asyncio.subprocess.Process:
    for attempt in range(_BUSY_RETRIES + 1):
        try:
            return await asyncio.create_subprocess_exec(
                path, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=inv.env(), cwd="/", start_new_session=True)
        except OSError as exc:
            if exc.errno == errno.ETXTBSY and attempt < _BUSY_RETRIES:
                await asyncio.sleep(1.0)
                continue
            raise Internal(f"CNI plugin {plugin} could not be started ({inv.command}): "
                           f"{exc.strerror or exc}") from None
    raise AssertionError("unreachable")


async def exec_plugin(path: str, plugin: str, inv: Invocation, stdin: bytes,
                      timeout: float) -> bytes:
    """Run ``path`` with ``stdin`` and the invocation's environment; return its stdout.

    A plugin that does not finish within ``timeout`` seconds is killed (DeadlineExceeded); a
    non-zero exit raises the plugin's own error (see ``cni.errors``).
    """
    proc = await _spawn(path, plugin, inv)
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except TimeoutError:
        _kill_group(proc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), _REAP_TIMEOUT)
        raise DeadlineExceeded(
            f"CNI plugin {plugin} timed out after {timeout:g}s ({inv.command})") from None
    except BaseException:
        # Cancelled (or anything else): never leave a plugin running behind our back.
        _kill_group(proc)
        raise
    rc = proc.returncode if proc.returncode is not None else -1
    if rc != 0:
        raise _failure(plugin, inv.command, rc, stdout, stderr)
    if stderr.strip():
        log.debug("cni plugin stderr", plugin=plugin, command=inv.command,
                  stderr=trim(stderr.decode(errors="replace")))
    return stdout
