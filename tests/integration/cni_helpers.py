"""Helpers for the CNI integration tests: pinned pod netns, conflists, probes via nsenter.

Everything here runs inside the throwaway network namespace the test run was started in
(``unshare --net --fork``); ``in_private_netns()`` tells whether that is the case.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.rig.netns import in_private_netns  # noqa: F401  (re-exported)

FAKE_CNI_DIR = Path(__file__).parent / "fake_cni"
SYSTEM_CNI_DIR = "/usr/lib/cni"


def run(*cmd: str, timeout: float = 20.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=check)


class PodNetns:
    """A network namespace pinned by a bind mount on a file in ``directory``."""

    def __init__(self, directory: Path, name: str) -> None:
        self.path = str(directory / name)
        Path(self.path).touch()
        run("unshare", f"--net={self.path}", "true")
        self.alive = True

    def exec(self, *cmd: str, timeout: float = 20.0,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        return run("nsenter", f"--net={self.path}", *cmd, timeout=timeout, check=check)

    def popen(self, *cmd: str) -> subprocess.Popen[str]:
        return subprocess.Popen(["nsenter", f"--net={self.path}", *cmd], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def links(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = json.loads(self.exec("ip", "-j", "addr").stdout)
        return out

    def link(self, ifname: str) -> dict[str, Any] | None:
        return next((lnk for lnk in self.links() if lnk["ifname"] == ifname), None)

    def addresses(self, ifname: str) -> set[str]:
        lnk = self.link(ifname) or {}
        return {f"{a['local']}/{a['prefixlen']}" for a in lnk.get("addr_info", [])
                if a.get("scope") == "global"}

    def destroy(self) -> None:
        if not self.alive:
            return
        self.alive = False
        run("umount", self.path, check=False)
        Path(self.path).unlink(missing_ok=True)


def install_fake_plugins(directory: Path) -> str:
    """Copy the test plugins into ``directory`` (executable); returns it as a string."""
    directory.mkdir(parents=True, exist_ok=True)
    for src in FAKE_CNI_DIR.iterdir():
        if src.is_file():
            dst = directory / src.name
            shutil.copyfile(src, dst)
            dst.chmod(0o755)
    return str(directory)


def write_conflist(conf_dir: Path, filename: str, name: str, plugins: list[dict[str, Any]],
                   cni_version: str = "1.0.0", **extra: Any) -> Path:
    conf_dir.mkdir(parents=True, exist_ok=True)
    path = conf_dir / filename
    path.write_text(json.dumps({"cniVersion": cni_version, "name": name, "plugins": plugins,
                                **extra}, indent=2))
    return path


def bridge_plugin(bridge: str, ranges: list[list[dict[str, str]]], data_dir: Path,
                  routes: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {
        "type": "bridge",
        "bridge": bridge,
        "isGateway": True,
        "ipMasq": False,
        "hairpinMode": True,
        "ipam": {
            "type": "host-local",
            "dataDir": str(data_dir),
            "ranges": ranges,
            "routes": routes if routes is not None else [{"dst": "0.0.0.0/0"}],
        },
    }


def reservations(data_dir: Path, network: str) -> list[str]:
    """host-local's reserved addresses of ``network`` (files named after the IP)."""
    d = data_dir / network
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir()
                  if not p.name.startswith(("last_reserved_ip", "lock")))


_SERVER = """
import socket, sys
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(4)
s.settimeout(float(sys.argv[3]))
print('listening', flush=True)
conn, peer = s.accept()
conn.settimeout(5)
data = conn.recv(100)
conn.sendall(b'pong:' + data)
conn.close()
"""

_CLIENT = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.sendall(sys.argv[3].encode())
print(s.recv(100).decode())
"""


def tcp_echo(server_ns: PodNetns, bind: str, port: int,
             client_ns: PodNetns | None, target: str, target_port: int,
             message: str = "ping") -> str:
    """Serve one TCP exchange in ``server_ns`` and connect from ``client_ns`` (None: from the
    test's own netns); returns what the client received."""
    server = server_ns.popen(sys.executable, "-c", _SERVER, bind, str(port), "10")
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.strip() == "listening", server.stderr.read() if server.stderr else line
        cmd = [sys.executable, "-c", _CLIENT, target, str(target_port), message]
        client = client_ns.exec(*cmd, timeout=15) if client_ns else run(*cmd, timeout=15)
        return client.stdout.strip()
    finally:
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
