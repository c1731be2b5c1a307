"""A Tether daemon set up as on a node, for the ecosystem's clients (critest, crictl):
a CNI bridge with portmap and loopback, and registry mirrors so that the public names
critest pulls (registry.k8s.io/..., gcr.io/..., k8s.gcr.io/...) resolve to the test
registry. Its own root/run dirs and its own default cgroup parent."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from shim.cri import api_pb2 as pb
from tests.rig.daemon import TetherDaemon
from tests.rig.images import _skopeo_env, images_dir
from tests.rig.registry import RegistryServer

REPO_ROOT = Path(__file__).resolve().parents[2]
CRITEST_IMAGES_SCRIPT = REPO_ROOT / "tests" / "images" / "critest.sh"
MIRRORED = ("registry.k8s.io", "gcr.io", "k8s.gcr.io")


def build_critest_images() -> Path:
    """tests/images/critest.sh (a no-op when its cache is current): the layout dir."""
    res = subprocess.run(["bash", str(CRITEST_IMAGES_SCRIPT)], capture_output=True, text=True,
                         check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{CRITEST_IMAGES_SCRIPT} failed ({res.returncode}):\n"
                           f"{res.stdout}\n{res.stderr}")
    return images_dir() / "critest"


def push_critest_images(layout: Path, host: str) -> dict[str, str]:
    """Every line of ``layout/refs`` pushed to ``host``; {repository:ref: digest}."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="tether-push-") as tmp:
        for line in (layout / "refs").read_text().splitlines():
            tag, dest = line.split()
            digestfile = Path(tmp) / "digest"
            cmd = ["skopeo", "copy", "--preserve-digests", "--quiet", "--insecure-policy",
                   "--dest-tls-verify=false", "--dest-no-creds", "--digestfile",
                   str(digestfile), f"oci:{layout}:{tag}", f"docker://{host}/{dest}"]
            res = subprocess.run(cmd, capture_output=True, text=True, check=False,
                                 env=_skopeo_env(tmp))
            if res.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stdout}{res.stderr}")
            out[dest] = digestfile.read_text().strip()
    return out


@dataclass
class Node:
    daemon: TetherDaemon
    registry: RegistryServer
    bridge: str

    @property
    def endpoint(self) -> str:
        return f"unix://{self.daemon.socket}"

    def stop(self) -> None:
        """Remove what a client left (pods, and so their containers), then stop the daemon.
        Containers outlive a daemon stop by design: without this they would be leaked."""
        cri = self.daemon.client()
        try:
            for item in cri.runtime.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=30).items:
                cri.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=item.id),
                                             timeout=60)
        finally:
            cri.close()
            self.daemon.stop()


def node_config(registry_host: str, cgroup_parent: str, extra: dict[str, object] | None = None
                ) -> str:
    cfg: dict[str, object] = {
        "images": {
            "insecure_registries": [registry_host],
            "mirrors": {m: [registry_host] for m in MIRRORED},
        },
        "runtime": {"default_cgroup_parent": cgroup_parent},
        "network": {"plugin_dirs": ["/usr/lib/cni", "/opt/cni/bin"]},
    }
    for k, v in (extra or {}).items():
        section = cfg.setdefault(k, {})
        assert isinstance(section, dict) and isinstance(v, dict)
        section.update(v)
    return tomli_w.dumps(cfg)


def bridge_conflist(bridge: str, subnet: str, ipam_dir: Path) -> dict[str, object]:
    """A node's pod network: a bridge with host-local IPAM, portmap (hostPort) and loopback."""
    return {
        "cniVersion": "1.0.0",
        "name": f"{bridge}-net",
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": False,
             "hairpinMode": True,
             "ipam": {"type": "host-local", "dataDir": str(ipam_dir),
                      "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
            {"type": "loopback"},
        ],
    }


def start_node(base: Path, registry: RegistryServer, *, bridge: str, subnet: str,
               extra: dict[str, object] | None = None,
               env: dict[str, str] | None = None) -> Node:
    parent = f"/tethernode{os.getpid()}{bridge}"
    daemon = TetherDaemon(base / "tether", config_text=node_config(registry.host, parent, extra),
                          log_level="info", env=dict(env or {}))
    daemon.cni_conf_dir.mkdir(parents=True, exist_ok=True)
    (daemon.cni_conf_dir / "10-node.conflist").write_text(
        json.dumps(bridge_conflist(bridge, subnet, base / "ipam")))
    daemon.start()
    return Node(daemon, registry, bridge)
