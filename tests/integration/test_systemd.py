"""The systemd unit (contrib/systemd/tether.service) and the daemon's sd_notify: systemd
itself checks the unit, and a notify socket of the test's own receives what systemd would."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.rig.daemon import TetherDaemon

UNIT = Path(__file__).resolve().parents[2] / "contrib" / "systemd" / "tether.service"


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    text = UNIT.read_text()
    for key in ("Type=notify", "KillMode=process", "Delegate=yes", "Restart=always",
                "LimitNOFILE=", "TasksMax="):
        assert key in text, key
    # verify checks that ExecStart exists: point it at this checkout's tether
    tether = shutil.which("tether") or str(Path(__file__).resolve().parents[2] / ".venv" /
                                           "bin" / "tether")
    copy = tmp_path / "tether.service"
    copy.write_text(text.replace("/usr/local/bin/tether", tether))
    res = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "tether.service" not in res.stderr, res.stderr  # no warning about the unit


def test_ready_reloading_stopping_notifications(tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(sock_path))
    s.settimeout(20)
    d = TetherDaemon(tmp_path / "t", env={"NOTIFY_SOCKET": str(sock_path)})
    try:
        d.start()
        msg = s.recv(4096).decode()
        assert "READY=1" in msg and f"MAINPID={d.proc.pid}" in msg  # type: ignore[union-attr]
        assert d.socket.exists()  # READY comes once the CRI socket is there
        d.signal(signal.SIGHUP)
        assert s.recv(4096).decode() == "RELOADING=1"
        assert s.recv(4096).decode() == "READY=1"
        d.signal(signal.SIGTERM)
        assert s.recv(4096).decode() == "STOPPING=1"
        deadline = time.monotonic() + 20
        while d.proc is not None and d.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        d.stop()
        s.close()
