"""The skopeo adapter: the only place that knows skopeo's flags and its error texts.

``inspect_raw`` fetches a manifest or index as the registry serves it; ``copy`` copies one
image (by digest) into an OCI layout whose blobs go to the shared blob directory (skopeo's
``oci:`` transport with ``--dest-shared-blob-dir`` skips blobs already there). Credentials
only ever travel in the auth file named by ``--src-authfile``. A copy that makes no progress
(no output, no growth of its temp files) for ``progress_timeout`` seconds is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass

from shim import errors, log

LAYOUT_TAG = "image"
_SETPRIV = shutil.which("setpriv")
_MSG = re.compile(r'level=(?:fatal|error) msg="((?:[^"\\]|\\.)*)"')
_PREFIXES = (
    re.compile(r'^Error parsing image name "[^"]*": '),
    re.compile(r"^Error initializing source [^:]+://\S+: "),
    re.compile(r"^initializing source [^:]+://\S+: "),
    re.compile(r"^Error: "),
)

# (substring, error class), first match wins; texts of containers/image and distribution.
_CLASSES: tuple[tuple[str, type[errors.TetherError]], ...] = (
    ("invalid reference format", errors.InvalidArgument),
    ("repository name must", errors.InvalidArgument),
    ("is blocked in", errors.PermissionDenied),
    ("manifest unknown", errors.NotFound),
    ("name unknown", errors.NotFound),
    ("not found", errors.NotFound),
    ("no image found in", errors.NotFound),
    ("choosing image instance", errors.NotFound),
    ("statuscode: 404", errors.NotFound),
    ("invalid username/password", errors.Unauthenticated),
    ("authentication required", errors.Unauthenticated),
    ("unauthorized", errors.Unauthenticated),
    ("statuscode: 401", errors.Unauthenticated),
    ("requested access to the resource is denied", errors.PermissionDenied),
    ("denied", errors.PermissionDenied),
    ("forbidden", errors.PermissionDenied),
    ("statuscode: 403", errors.PermissionDenied),
    ("digest did not match", errors.Internal),
    ("digests do not match", errors.Internal),
    ("connection refused", errors.Unavailable),
    ("no such host", errors.Unavailable),
    ("i/o timeout", errors.Unavailable),
    ("network is unreachable", errors.Unavailable),
    ("server gave http response to https client", errors.Unavailable),
    ("tls", errors.Unavailable),
    ("x509", errors.Unavailable),
    ("dial tcp", errors.Unavailable),
    ("pinging container registry", errors.Unavailable),
    ("connection reset", errors.Unavailable),
    ("eof", errors.Unavailable),
    ("too many requests", errors.Unavailable),
    ("toomanyrequests", errors.Unavailable),
    ("service unavailable", errors.Unavailable),
    ("bad gateway", errors.Unavailable),
)


class SkopeoFailure(Exception):
    """skopeo exited non-zero; ``kind`` is the TetherError class its text maps to."""

    def __init__(self, kind: type[errors.TetherError], text: str, stderr: str) -> None:
        super().__init__(text)
        self.kind = kind
        self.text = text
        self.stderr = stderr


class NoProgress(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"no progress for {seconds:g}s")
        self.seconds = seconds


def error_text(stderr: str) -> str:
    """skopeo's own error message, without logrus framing and the "Error parsing ..." prefix."""
    found = _MSG.findall(stderr)
    if found:
        raw = found[-1]
        try:
            text = json.loads(f'"{raw}"')
        except ValueError:
            text = raw.replace('\\"', '"')
    else:
        lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
        text = lines[-1] if lines else "skopeo failed without a message"
    for p in _PREFIXES:
        text = p.sub("", text)
    return errors.trim(text)


def classify(text: str) -> type[errors.TetherError]:
    low = text.lower()
    for needle, cls in _CLASSES:
        if needle in low:
            return cls
    return errors.Internal


@dataclass(frozen=True)
class SkopeoEnv:
    registries_conf: str
    policy: str
    home: str  # HOME/XDG_RUNTIME_DIR: keeps root's own container configs out
    tmpdir: str
    binary: str = "skopeo"

    def environ(self) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items()
            if k in ("PATH", "LANG", "LC_ALL", "SSL_CERT_FILE", "SSL_CERT_DIR")
            or k.lower() in ("http_proxy", "https_proxy", "no_proxy")
        }
        env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        env.update(HOME=self.home, XDG_RUNTIME_DIR=self.home, TMPDIR=self.tmpdir)
        return env

    def base(self) -> list[str]:
        # setpriv: skopeo dies with the daemon (it runs in a session of its own, so it can be
        # killed as a group, and would otherwise outlive a crash, stuck on a registry)
        wrap = [_SETPRIV, "--pdeathsig", "KILL", "--"] if _SETPRIV else []
        return [*wrap, self.binary, "--registries-conf", self.registries_conf,
                "--policy", self.policy]


class Skopeo:
    def __init__(self, env: SkopeoEnv) -> None:
        self.env = env
        self.logger = log.get("skopeo")

    async def _run(
        self, args: list[str], timeout: float, watch: str | None = None
    ) -> tuple[bytes, str]:
        cmd = self.env.base() + args
        started = time.monotonic()
        self.logger.debug("exec", argv=cmd)
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env.environ(),
            start_new_session=True,
        )
        out = bytearray()
        err = bytearray()
        last = time.monotonic()

        async def pump(stream: asyncio.StreamReader | None, buf: bytearray) -> None:
            nonlocal last
            assert stream is not None
            while chunk := await stream.read(65536):
                buf += chunk
                last = time.monotonic()

        pumps = asyncio.gather(pump(proc.stdout, out), pump(proc.stderr, err))
        signature = _signature(watch)
        try:
            while True:
                try:
                    await asyncio.wait_for(asyncio.shield(pumps), min(0.5, timeout / 4))
                    break
                except TimeoutError:
                    pass
                now = time.monotonic()
                sig = _signature(watch)
                if sig != signature:
                    signature, last = sig, now
                if now - last > timeout:
                    raise NoProgress(timeout)
            rc = await proc.wait()
        except BaseException:
            _kill(proc)
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(proc.wait(), 5)
            pumps.cancel()
            with contextlib.suppress(BaseException):
                await pumps
            raise
        stderr = err.decode(errors="replace")
        self.logger.debug(
            "exit", argv0=args[0], rc=rc, ms=round((time.monotonic() - started) * 1000, 1)
        )
        if rc != 0:
            text = error_text(stderr)
            raise SkopeoFailure(classify(text), text, stderr)
        return bytes(out), stderr

    async def inspect_raw(self, ref: str, authfile: str, timeout: float) -> bytes:
        """The manifest or index at ``docker://ref``, byte for byte."""
        out, _ = await self._run(
            ["inspect", "--raw", "--retry-times", "0", "--authfile", authfile, f"docker://{ref}"],
            timeout,
        )
        return out

    async def copy(
        self, ref: str, layout: str, blob_dir: str, authfile: str, progress_timeout: float
    ) -> None:
        """Copy ``docker://ref`` into the OCI layout at ``layout`` (tag ``image``)."""
        await self._run(
            [
                "copy", "--retry-times", "0", "--remove-signatures",
                "--src-authfile", authfile,
                "--dest-shared-blob-dir", blob_dir,
                "--dest-oci-accept-uncompressed-layers",
                f"docker://{ref}", f"oci:{layout}:{LAYOUT_TAG}",
            ],
            progress_timeout,
            watch=layout,
        )


def _signature(path: str | None) -> tuple[tuple[str, int], ...]:
    """What changes while skopeo downloads: its temp files in the layout dir and their sizes."""
    if path is None:
        return ()
    out = []
    try:
        with os.scandir(path) as it:
            for e in it:
                with contextlib.suppress(OSError):
                    out.append((e.name, e.stat(follow_symlinks=False).st_size))
    except OSError:
        return ()
    return tuple(sorted(out))


def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
