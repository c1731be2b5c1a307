"""containerd 1.6 (Debian's, with its CRI plugin) as a node runtime in the test network
namespace: the reference the kubelet stage measures Tether against
(``TETHER_KUBE_RUNTIME=containerd``). Same CNI network, same mirrors to the test registry,
runc under cgroupfs; its root, state and socket live under ``base``."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.rig.node import MIRRORED, bridge_conflist
from tests.rig.registry import RegistryServer


def _config(base: Path, registry: str) -> str:
    runc = shutil.which("runc") or "/usr/sbin/runc"
    return f"""version = 2
root = "{base}/root"
state = "{base}/state"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{base}/containerd.sock"
[ttrpc]
  address = "{base}/containerd.sock.ttrpc"
[debug]
  level = "info"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.9"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # root lacks CAP_SYS_RESOURCE here: sandboxes' -998 would fail in runc
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        Root = "{base}/state/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{base}/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{base}/certs.d"
"""


@dataclass
class ContainerdNode:
    base: Path
    popen: subprocess.Popen[bytes]

    @property
    def endpoint(self) -> str:
        return f"unix://{self.base}/containerd.sock"

    def stop(self, crictl: str) -> None:
        """Every pod removed through the CRI (CNI DEL, unmounts), then containerd and the
        shims it started stopped, and what they left unmounted."""
        ep = self.endpoint
        base = [crictl, "--config", "/dev/null", "-r", ep, "-i", ep, "--timeout", "60s"]
        pods = subprocess.run([*base, "pods", "-q"], capture_output=True, text=True,
                              check=False).stdout.split()
        for pod in pods:
            subprocess.run([*base, "stopp", pod], capture_output=True, check=False)
            subprocess.run([*base, "rmp", pod], capture_output=True, check=False)
        shims = _shims_of(str(self.base / "containerd.sock"))
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(20)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        for pid in shims:  # ours: they carried this containerd's address
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
        for m in sorted((m for m in mounts if m.startswith(f"{self.base}/")), key=len,
                        reverse=True):
            subprocess.run(["umount", "-l", m], check=False, capture_output=True)


def _shims_of(sock: str) -> list[int]:
    """containerd-shim-runc-v2 processes carrying this containerd's socket address."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if b"-address" in argv and sock.encode() in argv:
                out.append(int(proc.name))
    return out


def start_containerd(base: Path, registry: RegistryServer, *, bridge: str, subnet: str
                     ) -> ContainerdNode:
    if shutil.which("containerd") is None:
        raise RuntimeError("containerd not installed (apt-get install containerd)")
    base.mkdir(parents=True, exist_ok=True)
    (base / "net.d").mkdir(exist_ok=True)
    (base / "net.d" / "10-node.conflist").write_text(
        json.dumps(bridge_conflist(bridge, subnet, base / "ipam")))
    for name in (registry.host, *MIRRORED):
        hosts = base / "certs.d" / name
        hosts.mkdir(parents=True, exist_ok=True)
        (hosts / "hosts.toml").write_text(
            f'server = "http://{registry.host}"\n[host."http://{registry.host}"]\n'
            '  capabilities = ["pull", "resolve"]\n  skip_verify = true\n')
    conf = base / "config.toml"
    conf.write_text(_config(base, registry.host))
    with open(base / "containerd.log", "ab") as log:
        popen = subprocess.Popen(["containerd", "--config", str(conf)], stdout=log,
                                 stderr=log, stdin=subprocess.DEVNULL)
    node = ContainerdNode(base, popen)
    sock = base / "containerd.sock"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"containerd exited: {(base / 'containerd.log').read_text()}")
        if sock.exists() and subprocess.run(
                ["ctr", "--address", str(sock), "version"], capture_output=True).returncode == 0:
            return node
        time.sleep(0.2)
    node.popen.kill()
    raise RuntimeError("containerd did not come up in 30 s")
