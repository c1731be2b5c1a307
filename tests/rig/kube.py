"""A real single-node Kubernetes against a Tether node of its own: etcd (Debian's
etcd-server), kube-apiserver and a kubelet (``$KUBELET``/``$KUBE_APISERVER``/``$KUBECTL``,
PATH, or ../shared/tools/bin), all inside the test run's network namespace.

The kubelet owns its runtime (it kills sandboxes it did not make), so the stage gets a
daemon of its own. Its node IP is on a port-less bridge made in the test namespace (a kubelet
refuses a loopback node IP); its cgroups live under a cgroup root of this run's own, removed
afterwards; its pod volumes (tmpfs) live under its own root dir and are unmounted afterwards.
"""

from __future__ import annotations

import calendar
import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.rig.containerd import ContainerdNode, start_containerd
from tests.rig.critest import SHARED_BIN, find_tool, require_tool
from tests.rig.daemon import free_port
from tests.rig.node import Node, start_node
from tests.rig.registry import RegistryServer
from tests.rig.tlscerts import make_ca, make_leaf

NODE_NAME = "tether-e2e"
NODE_IP = "10.203.0.1"
LINK = "tkube0"
CGROUP_FS = Path("/sys/fs/cgroup")
# the kubelet hardcodes these two (podLogsRootDirectory, containerLogsDir)
POD_LOGS = Path("/var/log/pods")

HOW_TO_GET = ("kubelet, kube-apiserver and kubectl: build Kubernetes (`make WHAT=cmd/kubelet` …) "
              "or take a release, then put them on PATH or set KUBELET / KUBE_APISERVER / "
              "KUBECTL; etcd: apt-get install etcd-server")


def find_kube_tools() -> dict[str, str | None]:
    """$KUBELET / $KUBE_APISERVER / $KUBECTL, then ../shared/tools/bin, then PATH: the
    shared folder before PATH so that the three come from one build (a kubectl on PATH may
    be a cloud SDK's, versions away from the kubelet); etcd: $ETCD, then PATH."""
    tools: dict[str, str | None] = {}
    for name in ("kubelet", "kube-apiserver", "kubectl"):
        env = os.environ.get(name.upper().replace("-", "_"))
        shared = SHARED_BIN / name
        tools[name] = (env if env and os.access(env, os.X_OK) else None) if env else (
            str(shared) if os.access(shared, os.X_OK) else shutil.which(name))
    tools["etcd"] = os.environ.get("ETCD") or shutil.which("etcd")
    return tools


def require_kube_tools() -> dict[str, str]:
    """The stage's tools (crictl too); without them it says so in one line: a skip, or under
    ``CI=true`` a failure."""
    import pytest

    require_tool("crictl")
    tools = find_kube_tools()
    missing = [n for n, p in tools.items() if not p]
    if missing:
        msg = f"kubelet stage: {', '.join(missing)} not found: {HOW_TO_GET}"
        if os.environ.get("CI") == "true":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return {n: p for n, p in tools.items() if p}


class KubeError(RuntimeError):
    pass


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 20) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def tail(self, n: int = 40) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(lines[-n:])


def _cgroup_dirs(root: str) -> list[Path]:
    """The directory of cgroup ``root`` in every mounted hierarchy (v1 and v2)."""
    out = []
    for entry in sorted(CGROUP_FS.iterdir()):
        if entry.is_symlink() or not entry.is_dir():
            continue
        out.append(entry / root.lstrip("/"))
    return out


def _rm_cgroup_tree(path: Path) -> None:
    if not path.is_dir():
        return
    for sub in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            sub.rmdir()
    with contextlib.suppress(OSError):
        path.rmdir()


def _umount_under(prefix: Path) -> None:
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    # The kubelet bind-mounts its own root dir onto itself (to make it shared): that too.
    inside = (m for m in mounts if m == str(prefix) or m.startswith(f"{prefix}/"))
    for m in sorted(inside, key=len, reverse=True):
        subprocess.run(["umount", "-l", m], check=False, capture_output=True)


@dataclass
class Kube:
    """etcd + kube-apiserver + kubelet + Tether, with kubectl as the user's hands."""

    base: Path
    registry: RegistryServer
    tools: dict[str, str]
    # "tether", or "containerd" to measure the same cases against the reference runtime
    runtime: str = "tether"
    node: Node | None = None
    containerd: ContainerdNode | None = None
    procs: dict[str, Proc] = field(default_factory=dict)
    api_port: int = 0
    kubelet_port: int = 0
    cgroup_root: str = ""
    removals: RemovalWatch | None = None
    node_extra: dict[str, dict[str, Any]] = field(default_factory=dict)  # Tether's config
    kubelet_env: dict[str, str] = field(default_factory=dict)  # added to the kubelet's

    # ---------------------------------------------------------------- paths
    @property
    def pki(self) -> Path:
        return self.base / "pki"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.base / "admin.kubeconfig"

    @property
    def kubelet_dir(self) -> Path:
        return self.base / "kubelet"

    @property
    def manifests(self) -> Path:
        return self.base / "manifests"

    # ---------------------------------------------------------------- kubectl
    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = [self.tools["kubectl"], "--kubeconfig", str(self.admin_kubeconfig), *args]
        res = subprocess.run(cmd, input=input, capture_output=True, text=True,
                             timeout=timeout, check=False)
        if check and res.returncode != 0:
            raise KubeError(f"kubectl {' '.join(args)} exited {res.returncode}:\n"
                            f"{res.stdout}\n{res.stderr}")
        return res

    def apply(self, doc: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps(doc))

    def get(self, kind: str, name: str, namespace: str = "default") -> Any:
        return json.loads(self.kubectl("-n", namespace, "get", kind, name, "-o", "json").stdout)

    @property
    def endpoint(self) -> str:
        node = self.node or self.containerd
        assert node is not None
        return node.endpoint

    def crictl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        ep = self.endpoint
        crictl = find_tool("crictl")
        if crictl is None:
            raise KubeError("crictl not found")
        res = subprocess.run([crictl, "--config", "/dev/null", "-r", ep, "-i", ep,
                              "--timeout", "30s", *args],
                             capture_output=True, text=True, timeout=60, check=False)
        if check and res.returncode != 0:
            raise KubeError(f"crictl {' '.join(args)}: {res.stderr}")
        return res

    # ---------------------------------------------------------------- bring-up
    def up(self) -> Kube:
        self.base.mkdir(parents=True, exist_ok=True)
        self.cgroup_root = f"/tetherkube{os.getpid()}"
        self._link_up()
        self._make_pki()
        self._etcd()
        self._apiserver()
        if self.runtime == "containerd":
            self.containerd = start_containerd(self.base / "containerd", self.registry,
                                               bridge="tkubebr0", subnet="10.204.0.0/24")
        else:
            self.node = start_node(self.base / "node", self.registry, bridge="tkubebr0",
                                   subnet="10.204.0.0/24",
                                   extra={"runtime": {"default_cgroup_parent":
                                                      f"{self.cgroup_root}/tether"},
                                          **self.node_extra})
        self._kubelet()
        self.removals = RemovalWatch(self)
        self.removals.start()
        return self

    def _link_up(self) -> None:
        ip = ["ip"]
        if subprocess.run([*ip, "link", "show", LINK], capture_output=True).returncode != 0:
            subprocess.run([*ip, "link", "add", LINK, "type", "bridge"], check=True)
        subprocess.run([*ip, "addr", "replace", f"{NODE_IP}/32", "dev", LINK], check=True)
        subprocess.run([*ip, "link", "set", LINK, "up"], check=True)

    def _make_pki(self) -> None:
        ca = make_ca(self.pki, cn="tether-e2e-kube-ca")
        self.ca = ca
        make_leaf(self.pki, "apiserver", ca, cn="kube-apiserver", usage="serverAuth",
                  san=f"IP:127.0.0.1,IP:{NODE_IP},IP:10.96.0.1,DNS:localhost,DNS:kubernetes,"
                      "DNS:kubernetes.default,DNS:kubernetes.default.svc")
        make_leaf(self.pki, "admin", ca, cn="e2e-admin", org="system:masters",
                  usage="clientAuth")
        make_leaf(self.pki, "apiserver-kubelet-client", ca, cn="kube-apiserver-kubelet-client",
                  org="system:masters", usage="clientAuth")
        make_leaf(self.pki, "kubelet-client", ca, cn=f"system:node:{NODE_NAME}",
                  org="system:nodes", usage="clientAuth")
        make_leaf(self.pki, "kubelet-serving", ca, cn=NODE_NAME, usage="serverAuth",
                  san=f"IP:{NODE_IP},IP:127.0.0.1,DNS:{NODE_NAME}")
        subprocess.run(["openssl", "genrsa", "-out", str(self.pki / "sa.key"), "2048"],
                       check=True, capture_output=True)
        subprocess.run(["openssl", "rsa", "-in", str(self.pki / "sa.key"), "-pubout", "-out",
                        str(self.pki / "sa.pub")], check=True, capture_output=True)

    def _kubeconfig(self, path: Path, user: str, cert: str) -> None:
        doc = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "e2e", "cluster": {
                "server": f"https://127.0.0.1:{self.api_port}",
                "certificate-authority": str(self.pki / "ca.crt")}}],
            "users": [{"name": user, "user": {
                "client-certificate": str(self.pki / f"{cert}.crt"),
                "client-key": str(self.pki / f"{cert}.key")}}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": user}}],
            "current-context": "e2e",
        }
        path.write_text(json.dumps(doc))

    def _start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        log = self.base / f"{name}.log"
        with open(log, "ab") as f:
            popen = subprocess.Popen(argv, stdout=f, stderr=f, stdin=subprocess.DEVNULL,
                                     env={**os.environ, **env} if env else None)
        proc = Proc(name, popen, log)
        self.procs[name] = proc
        return proc

    def _wait(self, what: str, proc: Proc, ok: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ok():
                return
            if not proc.alive():
                raise KubeError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.tail()}")
            time.sleep(0.3)
        raise KubeError(f"{what} not within {timeout:.0f} s:\n{proc.tail()}")

    def _etcd(self) -> None:
        client, peer = free_port(), free_port()
        data = self.base / "etcd"
        data.mkdir(mode=0o700, exist_ok=True)
        self.etcd_url = f"http://127.0.0.1:{client}"
        proc = self._start("etcd", [
            self.tools["etcd"], "--name", "e2e", "--data-dir", str(data),
            "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"e2e=http://127.0.0.1:{peer}",
            "--quota-backend-bytes", str(1 << 30)])

        def healthy() -> bool:
            res = subprocess.run(["curl", "-fsS", "-m", "2", f"{self.etcd_url}/health"],
                                 capture_output=True, text=True, check=False)
            return '"true"' in res.stdout

        self._wait("etcd healthy", proc, healthy, 30)

    def _apiserver(self) -> None:
        self.api_port = free_port()
        pki = self.pki
        proc = self._start("apiserver", [
            self.tools["kube-apiserver"], f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1", f"--secure-port={self.api_port}",
            f"--advertise-address={NODE_IP}", "--endpoint-reconciler-type=none",
            "--service-cluster-ip-range=10.96.0.0/24", "--allow-privileged=true",
            f"--client-ca-file={pki}/ca.crt", f"--tls-cert-file={pki}/apiserver.crt",
            f"--tls-private-key-file={pki}/apiserver.key",
            f"--kubelet-client-certificate={pki}/apiserver-kubelet-client.crt",
            f"--kubelet-client-key={pki}/apiserver-kubelet-client.key",
            f"--kubelet-certificate-authority={pki}/ca.crt",
            "--kubelet-preferred-address-types=InternalIP",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki}/sa.pub",
            f"--service-account-signing-key-file={pki}/sa.key",
            "--authorization-mode=Node,RBAC", "--disable-admission-plugins=ServiceAccount",
            "--enable-priority-and-fairness=false", "--profiling=false", "--v=1"])
        self._kubeconfig(self.admin_kubeconfig, "e2e-admin", "admin")

        def ready() -> bool:
            return self.kubectl("get", "--raw", "/readyz", check=False,
                                timeout=10).returncode == 0

        self._wait("kube-apiserver ready", proc, ready, 90)

    def _kubelet(self) -> None:
        for d in _cgroup_dirs(self.cgroup_root):
            d.mkdir(exist_ok=True)
        self.kubelet_dir.mkdir(exist_ok=True)
        self.manifests.mkdir(exist_ok=True)
        self.kubelet_port = free_port()
        resolv = self.base / "resolv.conf"
        resolv.write_text("nameserver 127.0.0.1\noptions ndots:1\n")
        kc = self.base / "kubelet.kubeconfig"
        self._kubeconfig(kc, f"system:node:{NODE_NAME}", "kubelet-client")
        pki = self.pki
        conf = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "address": NODE_IP, "port": self.kubelet_port, "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": free_port(),
            "cgroupDriver": "cgroupfs", "cgroupsPerQOS": True, "cgroupRoot": self.cgroup_root,
            "failSwapOn": False, "staticPodPath": str(self.manifests),
            "fileCheckFrequency": "2s", "syncFrequency": "10s",
            "volumePluginDir": str(self.kubelet_dir / "volume-plugins"),
            "tlsCertFile": f"{pki}/kubelet-serving.crt",
            "tlsPrivateKeyFile": f"{pki}/kubelet-serving.key",
            "rotateCertificates": False, "serverTLSBootstrap": False,
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                               "x509": {"clientCAFile": f"{pki}/ca.crt"}},
            "authorization": {"mode": "AlwaysAllow"},
            "clusterDomain": "cluster.local", "resolvConf": str(resolv),
            "oomScoreAdj": 0, "serializeImagePulls": False,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                             "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "runtimeRequestTimeout": "2m", "containerLogMaxSize": "10Mi",
            "allowedUnsafeSysctls": ["kernel.msg*", "net.ipv4.route.min_pmtu"],
            "makeIPTablesUtilChains": False,
        }
        (self.base / "kubelet.yaml").write_text(json.dumps(conf))
        self.start_kubelet()

    def start_kubelet(self) -> None:
        ep = self.endpoint
        proc = self._start("kubelet", [
            self.tools["kubelet"], f"--config={self.base / 'kubelet.yaml'}",
            f"--kubeconfig={self.base / 'kubelet.kubeconfig'}",
            f"--root-dir={self.kubelet_dir}", f"--cert-dir={self.kubelet_dir / 'pki'}",
            "--container-runtime=remote", f"--container-runtime-endpoint={ep}",
            f"--image-service-endpoint={ep}",
            "--pod-infra-container-image=registry.k8s.io/pause:3.9",
            f"--hostname-override={NODE_NAME}", f"--node-ip={NODE_IP}", "--v=2"],
            env=self.kubelet_env)
        since = time.time()
        self._wait(f"node {NODE_NAME} Ready", proc, lambda: self._node_ready(since), 90)

    def _node_ready(self, since: float) -> bool:
        res = self.kubectl("get", "node", NODE_NAME, "-o", "json", check=False, timeout=10)
        if res.returncode != 0:
            return False
        for c in json.loads(res.stdout)["status"].get("conditions", []):
            if c["type"] == "Ready" and c["status"] == "True":
                beat = calendar.timegm(time.strptime(c["lastHeartbeatTime"],
                                                     "%Y-%m-%dT%H:%M:%SZ"))
                return beat >= int(since) - 1
        return False

    def stop_kubelet(self) -> None:
        proc = self.procs.pop("kubelet", None)
        if proc is not None:
            proc.stop()

    # ---------------------------------------------------------------- tear-down
    def down(self) -> None:
        """Pods deleted through the API, then everything stopped and removed: the node's
        pods (CRI), the kubelet's mounts and cgroups, the node-IP link. Every step runs even
        when one before it failed; the first failure is raised at the end."""
        def delete_pods() -> None:
            if "kubelet" in self.procs and "apiserver" in self.procs:
                self.kubectl("delete", "pods", "--all", "-A", "--grace-period=1",
                             "--timeout=60s", check=False, timeout=90)

        def stop_runtime() -> None:
            if self.node is not None:
                self.node.stop()
            if self.containerd is not None:
                self.containerd.stop(find_tool("crictl") or "crictl")

        def stop_control_plane() -> None:
            for name in ("apiserver", "etcd"):
                proc = self.procs.pop(name, None)
                if proc is not None:
                    proc.stop()

        def remove_cgroups() -> None:
            for d in _cgroup_dirs(self.cgroup_root):
                _rm_cgroup_tree(d)

        steps = [delete_pods, self.removals.stop if self.removals else (lambda: None),
                 self.stop_kubelet, stop_runtime, stop_control_plane,
                 lambda: _umount_under(self.kubelet_dir), remove_cgroups,
                 lambda: subprocess.run(["ip", "link", "del", LINK], check=False,
                                        capture_output=True)]
        errors: list[BaseException] = []
        for step in steps:
            try:
                step()
            except Exception as e:  # the rest must still run
                errors.append(e)
        if errors:
            raise errors[0]


class RemovalWatch(threading.Thread):
    """How long a deleted pod stays in the runtime: polls ``crictl pods`` every half second
    and keeps, per pod name, when it was last seen; ``deleted`` is filled by whoever deletes
    (the time ``kubectl delete`` was started)."""

    def __init__(self, kube: Kube) -> None:
        super().__init__(daemon=True, name="removal-watch")
        self.kube = kube
        self.last_seen: dict[str, float] = {}
        self.deleted: dict[str, float] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.5):
            with contextlib.suppress(Exception):
                res = self.kube.crictl("pods", "-o", "json", check=False)
                now = time.monotonic()
                for item in json.loads(res.stdout or "{}").get("items", []):
                    self.last_seen[item["metadata"]["name"]] = now

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    def mark_deleted(self, *names: str) -> None:
        now = time.monotonic()
        self.deleted.update({n: now for n in names})

    def report(self) -> dict[str, float | None]:
        """Seconds from ``kubectl delete`` to the pod's sandbox gone from the runtime (None:
        still there)."""
        recent = time.monotonic() - 1
        return {name: None if self.last_seen.get(name, 0) > recent else
                round(max(0.0, self.last_seen.get(name, t) - t) + 0.25, 1)
                for name, t in sorted(self.deleted.items())}
