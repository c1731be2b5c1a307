"""Start and stop a real ``tether serve`` with private root/run dirs, and talk CRI to it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from shim.cri import api_pb2_grpc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class CRIClient:
    """The generated stubs over the daemon's socket, as the kubelet or crictl use them."""

    channel: grpc.Channel
    runtime: api_pb2_grpc.RuntimeServiceStub
    images: api_pb2_grpc.ImageServiceStub

    @classmethod
    def connect(cls, sock: str | Path) -> CRIClient:
        # A pool of its own: gRPC otherwise shares subchannels between channels to the same
        # socket, and one left in reconnect backoff by a killed daemon fails the next client.
        ch = grpc.insecure_channel(f"unix://{sock}",
                                   options=[("grpc.use_local_subchannel_pool", 1)])
        return cls(ch, api_pb2_grpc.RuntimeServiceStub(ch), api_pb2_grpc.ImageServiceStub(ch))

    def close(self) -> None:
        self.channel.close()


def searchable(path: Path) -> None:
    """Let others search ``path`` and the dirs above it (pytest makes its temp dirs 0700), as
    on a node, where /var/lib is 0755: a container in a user namespace opens its rootfs as the
    pod's root, not the node's (the daemon checks this, and reports user namespaces
    unavailable otherwise)."""
    for p in (path, *path.parents):
        mode = p.stat().st_mode
        if mode & 0o011 != 0o011:
            p.chmod(mode | 0o011)


@dataclass
class TetherDaemon:
    base: Path
    extra_args: list[str] = field(default_factory=list)
    config_text: str = ""
    # None leaves the level to the config files (a flag would win over them).
    log_level: str | None = "debug"
    proc: subprocess.Popen[bytes] | None = None
    metrics_port: int = 0
    env: dict[str, str] = field(default_factory=dict)  # added to the test's environment

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def run_dir(self) -> Path:
        return self.base / "run"

    @property
    def socket(self) -> Path:
        return self.run_dir / "tether.sock"

    @property
    def log_path(self) -> Path:
        return self.base / "tether.log"

    @property
    def config_path(self) -> Path:
        return self.base / "tether.toml"

    @property
    def cni_conf_dir(self) -> Path:
        return self.base / "net.d"

    def command(self) -> list[str]:
        if not self.metrics_port:
            self.metrics_port = free_port()
        self.config_path.write_text(self.config_text)
        self.cni_conf_dir.mkdir(parents=True, exist_ok=True)
        return [
            sys.executable, "-m", "shim.cli", "serve",
            "--config", str(self.config_path),
            "--config-dir", str(self.base / "tether.d"),
            "--root", str(self.root),
            "--run-dir", str(self.run_dir),
            "--cni-conf-dir", str(self.cni_conf_dir),
            "--metrics-port", str(self.metrics_port),
            "--log-format", "json",
            *(["--log-level", self.log_level] if self.log_level else []),
            *self.extra_args,
        ]

    def start(self, timeout: float = 20.0) -> TetherDaemon:
        self.base.mkdir(parents=True, exist_ok=True)
        searchable(self.base)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL,
                                     env={**os.environ, **self.env} if self.env else None)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"tether exited with {self.proc.returncode}:\n{self.log_path.read_text()}"
                )
            if self._serving() and _connectable(self.socket):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"tether did not listen within {timeout}s:\n{self.log_path.read_text()}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; SIGKILL only if it will not go. Returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def kill(self) -> None:
        """SIGKILL, as a crash would; the socket file is left behind, stale."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def client(self) -> CRIClient:
        return CRIClient.connect(self.socket)

    def _serving(self) -> bool:
        # Our own process says so: another daemon may answer on the same socket path.
        assert self.proc is not None
        mark = f'"pid": {self.proc.pid}'
        return any('"serving"' in line and mark in line for line in self.logs().splitlines())

    def logs(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


def _connectable(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(os.fspath(path))
        return True
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            s.close()
