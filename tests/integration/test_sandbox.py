"""Pod sandboxes through the CRI, observed from the outside: real pause-holders, namespaces,
bind-mount pins, cgroups and CNI plugins, inside the test run's private network namespace."""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from podsandbox import cgroups, kernel
from shim.cri import api_pb2 as pb
from tests.integration.cni_helpers import (
    bridge_plugin,
    install_fake_plugins,
    reservations,
    write_conflist,
)
from tests.rig.daemon import CRIClient, TetherDaemon

NETWORK = "tether-pods"
_ENV_SEQ = itertools.count()
SUBNET = "10.89.0.0/24"


@dataclass
class Env:
    daemon: TetherDaemon
    cri: CRIClient
    ipam: Path
    fake_plugins: str
    cgroup_parent: str  # the daemon's default cgroup parent (relative)

    def conflist(self, plugins: list[dict[str, Any]], **extra: Any) -> None:
        for old in self.daemon.cni_conf_dir.glob("*"):
            old.unlink()
        write_conflist(self.daemon.cni_conf_dir, "10-pods.conflist", NETWORK, plugins, **extra)
        # The daemon re-reads the conf dir at most once a second.
        time.sleep(1.1)

    def bridge(self, ranges: list[list[dict[str, str]]] | None = None) -> dict[str, Any]:
        return bridge_plugin("tp0", ranges or [[{"subnet": SUBNET}]], self.ipam)

    def run(self, name: str = "pod", **kw: Any) -> str:
        req = pb.RunPodSandboxRequest(config=pod_config(name, **kw))
        return self.cri.runtime.RunPodSandbox(req, timeout=60).pod_sandbox_id

    def status(self, sid: str) -> tuple[pb.PodSandboxStatus, dict[str, Any]]:
        r = self.cri.runtime.PodSandboxStatus(
            pb.PodSandboxStatusRequest(pod_sandbox_id=sid, verbose=True))
        return r.status, json.loads(r.info["info"])

    def stop(self, sid: str) -> None:
        self.cri.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid), timeout=60)

    def remove(self, sid: str) -> None:
        self.cri.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid),
                                          timeout=60)

    def leases(self) -> list[str]:
        return reservations(self.ipam, NETWORK)


def pod_config(name: str, *, pid: int = pb.CONTAINER, network: int = pb.POD, ipc: int = pb.POD,
               hostname: str = "", sysctls: dict[str, str] | None = None,
               labels: dict[str, str] | None = None, ports: list[pb.PortMapping] | None = None,
               dns: pb.DNSConfig | None = None, cgroup_parent: str = "",
               annotations: dict[str, str] | None = None) -> pb.PodSandboxConfig:
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, namespace="default", uid=f"uid-{name}"),
        hostname=hostname,
        labels=labels or {},
        annotations=annotations or {},
        port_mappings=ports or [],
        dns_config=dns,
        linux=pb.LinuxPodSandboxConfig(
            cgroup_parent=cgroup_parent,
            sysctls=sysctls or {},
            security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(network=network, pid=pid, ipc=ipc)),
        ),
    )


def start_env(base: Path, extra_config: str = "", driver: str = "cgroupfs") -> Env:
    fake = install_fake_plugins(base / "fake-cni")
    # A default cgroup parent of its own: what this daemon leaves behind is told apart from
    # what other runtimes on the node (or other test runs) have there.
    name = f"tethertest{os.getpid()}x{next(_ENV_SEQ)}"
    parent, rel = (f"{name}.slice", f"{name}.slice") if driver == "systemd" else (f"/{name}", name)
    config = (f'[network]\nplugin_dirs = ["{fake}", "/usr/lib/cni"]\n'
              f'[runtime]\ncgroup_driver = "{driver}"\ndefault_cgroup_parent = "{parent}"\n'
              + extra_config)
    daemon = TetherDaemon(base / "t", config_text=config, log_level="info").start()
    return Env(daemon, daemon.client(), base / "ipam", fake, rel)


def stop_env(env: Env) -> None:
    """Remove every pod (so a failed test leaks nothing into the next), always stop the
    daemon, then report what could not be removed."""
    errors = []
    try:
        for item in env.cri.runtime.ListPodSandbox(pb.ListPodSandboxRequest()).items:
            try:
                env.remove(item.id)
            except grpc.RpcError as e:
                errors.append(f"{item.id}: {e.details()}")
    finally:
        env.cri.close()
        env.daemon.stop()
    assert not errors, f"teardown could not remove pods: {errors}"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = start_env(tmp_path)
    e.conflist([e.bridge(), {"type": "portmap", "capabilities": {"portMappings": True},
                             "snat": True}, {"type": "loopback"}])
    yield e
    stop_env(e)


def nsenter(info: dict[str, Any], *cmd: str, kinds: tuple[str, ...] = ("net", "uts", "ipc"),
            check: bool = True) -> str:
    args = [f"--{k}={info['namespaces'][k]['path']}" for k in kinds
            if info["namespaces"][k].get("path", "").startswith("/") and
            info["namespaces"][k]["mode"] == "POD"]
    out = subprocess.run(["nsenter", *args, "--", *cmd], capture_output=True, text=True,
                         timeout=20)
    if check:
        assert out.returncode == 0, out.stderr
    return out.stdout


def ns_inode(pid: int, kind: str) -> int:
    return os.stat(f"/proc/{pid}/ns/{kind}").st_ino


def snapshot(env: Env) -> dict[str, Any]:
    """Everything a pod may leave behind on the node."""
    run_dir = env.daemon.run_dir
    mounts = sorted(line.split()[4] for line in Path("/proc/self/mountinfo").read_text()
                    .splitlines() if str(env.daemon.base) in line)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    pins = sorted(str(p) for p in (run_dir / "ns").rglob("*") if p.is_file()) \
        if (run_dir / "ns").exists() else []
    sandboxes = sorted(os.listdir(run_dir / "sandboxes")) \
        if (run_dir / "sandboxes").exists() else []
    cache = env.daemon.root / "cni" / "results"
    return {
        "mounts": mounts,
        # Per-pod links (veths); the network's bridge, made by the first ADD, stays by design.
        "links": sorted(name for name in (ln.split(":")[1].strip().split("@")[0]
                                          for ln in links.splitlines()) if name != "tp0"),
        "pins": pins,
        "sandboxes": sandboxes,
        "leases": env.leases(),
        "cni_cache": sorted(os.listdir(cache)) if cache.exists() else [],
        "cgroups": pod_cgroups(env.cgroup_parent),
        "catatonit": sorted(p for p in os.listdir("/proc") if p.isdigit() and
                            _comm(p) == "catatonit" and _in_tree(p, env.cgroup_parent)
                            and not _zombie(p)),
    }


def pod_cgroups(parent: str) -> list[str]:
    """Pause-holder cgroups under the daemon's default parent, in every hierarchy."""
    out = []
    for point in cgroups.layout().mountpoints():
        d = Path(point) / parent
        if d.is_dir():
            out += [str(p) for p in d.iterdir() if p.is_dir() and p.name.startswith("tether-")]
    return sorted(out)


def _comm(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _zombie(pid: str) -> bool:
    # An orphan of a killed daemon waits for init to reap it; it holds nothing but a pid.
    return kernel.state(int(pid)) in ("Z", None)


def _in_tree(pid: str, parent: str) -> bool:
    """A pause-holder of this daemon: it lives in a tether-<id> cgroup under its parent."""
    try:
        cg = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False
    return f"/{parent}/tether-" in cg


# --- namespaces, seen from outside ----------------------------------------------------------

def test_pod_namespaces_hostname_ip_and_loopback(env: Env) -> None:
    sid = env.run("web", hostname="web-0")
    st, info = env.status(sid)
    assert st.state == pb.SANDBOX_READY
    assert st.network.ip.startswith("10.89.0.")
    assert nsenter(info, "hostname").strip() == "web-0"
    addrs = json.loads(nsenter(info, "ip", "-j", "addr"))
    by_name = {a["ifname"]: a for a in addrs}
    assert st.network.ip in [x["local"] for x in by_name["eth0"]["addr_info"]]
    assert "UP" in by_name["lo"]["flags"]
    pid = info["pid"]
    for kind in ("net", "ipc", "uts"):
        assert ns_inode(pid, kind) == info["namespaces"][kind]["inode"]
        assert os.stat(info["namespaces"][kind]["path"]).st_ino == ns_inode(pid, kind)
    # /etc/hostname and resolv.conf for containers, and the pod's own /dev/shm tmpfs
    sdir = Path(info["sandboxDir"])
    assert (sdir / "hostname").read_text() == "web-0\n"
    assert (sdir / "resolv.conf").exists()
    assert any(line.split()[4] == info["shm"] and " - tmpfs " in line
               for line in Path("/proc/self/mountinfo").read_text().splitlines())


def test_pause_holder_is_unprivileged(env: Env) -> None:
    _, info = env.status(env.run())
    status = Path(f"/proc/{info['pid']}/status").read_text()
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(fields[cap], 16) == 0, cap
    assert fields["NoNewPrivs"].strip() == "1"
    assert int(Path(f"/proc/{info['pid']}/oom_score_adj").read_text()) >= 0
    assert os.readlink(f"/proc/{info['pid']}/exe") == "/usr/bin/catatonit"
    # In the pod's cgroup on every hierarchy
    cg = Path(f"/proc/{info['pid']}/cgroup").read_text()
    assert info["cgroup"] in cg


def test_two_pods_have_distinct_namespaces(env: Env) -> None:
    _, a = env.status(env.run("a"))
    _, b = env.status(env.run("b"))
    for kind in ("net", "ipc", "uts"):
        assert a["namespaces"][kind]["inode"] != b["namespaces"][kind]["inode"], kind
    assert a["ips"] != b["ips"]


def test_pid_mode_pod_makes_pause_holder_pid_1(env: Env) -> None:
    _, info = env.status(env.run("shared", pid=pb.POD))
    nspid = next(ln for ln in Path(f"/proc/{info['pid']}/status").read_text().splitlines()
             if ln.startswith("NSpid:")).split()
    assert nspid[-1] == "1"  # PID 1 inside the pod's PID namespace
    assert ns_inode(info["pid"], "pid") == info["namespaces"]["pid"]["inode"]
    assert ns_inode(info["pid"], "pid") != namespaces_of_self("pid")


def namespaces_of_self(kind: str) -> int:
    return os.stat(f"/proc/self/ns/{kind}").st_ino


def test_node_modes_share_the_node_namespaces(env: Env) -> None:
    sid = env.run("host", network=pb.NODE, pid=pb.NODE, ipc=pb.NODE)
    st, info = env.status(sid)
    assert st.linux.namespaces.options.network == pb.NODE
    assert st.network.ip == ""
    pid = info["pid"]
    for kind in ("net", "ipc", "uts", "pid"):
        assert ns_inode(pid, kind) == namespaces_of_self(kind), kind
        assert info["namespaces"][kind]["mode"] == "NODE"
        assert info["namespaces"][kind]["inode"] == namespaces_of_self(kind)
    assert info["shm"] == "/dev/shm"
    assert env.leases() == []  # no CNI for a host-network pod


# --- traffic ----------------------------------------------------------------------------------

SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1); s.settimeout(15)
print("listening", flush=True)
c, _ = s.accept(); c.sendall(b"hello from " + socket.gethostname().encode()); c.close()
"""
CLIENT = """
import socket, sys
print(socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).recv(100).decode())
"""


def serve_once(info: dict[str, Any], port: int) -> subprocess.Popen[str]:
    args = [f"--net={info['namespaces']['net']['path']}",
            f"--uts={info['namespaces']['uts']['path']}"]
    p = subprocess.Popen(["nsenter", *args, "--", "python3", "-c", SERVER, str(port)],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "listening"
    return p


def test_pod_to_pod_traffic_over_the_bridge(env: Env) -> None:
    _, a = env.status(env.run("server", hostname="server"))
    _, b = env.status(env.run("client"))
    p = serve_once(a, 7000)
    try:
        out = nsenter(b, "python3", "-c", CLIENT, a["ips"][0], "7000")
        assert out.strip() == "hello from server"
    finally:
        p.wait(timeout=10)


def test_host_port_reaches_the_pod_through_portmap(env: Env) -> None:
    # The test netns is ours: let DNAT'ed loopback traffic be routed (portmap SNATs it back).
    subprocess.run(["sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1"], check=True)
    sid = env.run("hp", hostname="hp", ports=[pb.PortMapping(container_port=8080,
                                                              host_port=18080)])
    _, info = env.status(sid)
    p = serve_once(info, 8080)
    try:
        out = subprocess.run(["python3", "-c", CLIENT, "127.0.0.1", "18080"],
                             capture_output=True, text=True, timeout=20)
        assert out.stdout.strip() == "hello from hp", out.stderr
    finally:
        p.wait(timeout=10)


# --- config ----------------------------------------------------------------------------------

def test_sysctls_applied_in_the_pod_namespaces(env: Env) -> None:
    _, info = env.status(env.run("sys", sysctls={
        "net.ipv4.ip_unprivileged_port_start": "81",
        "kernel.shmmni": "1234",
        "net/ipv4/ping_group_range": "0 1000",
    }))
    assert nsenter(info, "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start").strip() == "81"
    assert nsenter(info, "cat", "/proc/sys/kernel/shmmni").strip() == "1234"
    assert nsenter(info, "cat", "/proc/sys/net/ipv4/ping_group_range").split() == ["0", "1000"]
    # The node's values are untouched.
    assert Path("/proc/sys/kernel/shmmni").read_text().strip() != "1234"


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"sysctls": {"net.ipv4.no_such_thing": "1"}}, "net.ipv4.no_such_thing"),
        ({"sysctls": {"kernel.hostname": "x"}}, "kernel.hostname"),
        ({"sysctls": {"net.ipv4.ip_forward": "1"}, "network": pb.NODE}, "hostNetwork"),
        ({"sysctls": {"kernel.shmmax": "1"}, "ipc": pb.NODE}, "hostIPC"),
        ({"sysctls": {"net.ipv4.ip_unprivileged_port_start": "banana"}}, "bad value"),
        ({"cgroup_parent": "relative/path"}, "cgroup_parent"),
        ({"hostname": "bad_host!"}, "config.hostname"),
        ({"dns": pb.DNSConfig(servers=["not-an-ip"])}, "dns_config.servers[0]"),
        ({"annotations": {"kubernetes.io/ingress-bandwidth": "lots"}}, "ingress-bandwidth"),
    ],
)
def test_bad_input_is_invalid_argument_and_leaves_nothing(
    env: Env, kw: dict[str, Any], fragment: str
) -> None:
    before = snapshot(env)
    with pytest.raises(grpc.RpcError) as e:
        env.run("bad", **kw)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in (e.value.details() or "")
    assert env.cri.runtime.ListPodSandbox(pb.ListPodSandboxRequest()).items == []
    assert snapshot(env) == before


def test_hostile_sysctl_name_touches_no_host_file(env: Env, tmp_path: Path) -> None:
    # "//" became ".." in the '.'<->'/' swap: the value went to /proc/sys/net/../../../<path>
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    up = "/".join([".."] * 3)
    for key in (f"net.//.//.//{str(victim).lstrip('/').replace('/', '.')}",
                f"net/{up}{victim}", "net.ipv4..ip_forward", "net.ipv4.ip_forward/.."):
        before = snapshot(env)
        with pytest.raises(grpc.RpcError) as e:
            env.run("evil", sysctls={key: "PWNED"})
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, key
        assert "linux.sysctls" in (e.value.details() or "")
        assert victim.read_text() == "untouched"
        assert snapshot(env) == before


def test_missing_metadata_and_unknown_handler(env: Env) -> None:
    with pytest.raises(grpc.RpcError) as e:
        env.cri.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=pb.PodSandboxConfig()))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "config.metadata.name" in (e.value.details() or "")
    with pytest.raises(grpc.RpcError) as e:
        env.cri.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=pod_config("h"),
                                                              runtime_handler="kata"))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "kata" in (e.value.details() or "")


def test_dns_config_written_to_resolv_conf(env: Env) -> None:
    _, info = env.status(env.run("dns", dns=pb.DNSConfig(
        servers=["10.96.0.10"], searches=["default.svc.cluster.local", "svc.cluster.local"],
        options=["ndots:5"])))
    text = (Path(info["sandboxDir"]) / "resolv.conf").read_text()
    assert text == ("nameserver 10.96.0.10\nsearch default.svc.cluster.local "
                    "svc.cluster.local\noptions ndots:5\n")


def test_duplicate_name_is_already_exists(env: Env) -> None:
    env.run("dup")
    with pytest.raises(grpc.RpcError) as e:
        env.run("dup")
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_cgroup_parent_systemd_and_cgroupfs(tmp_path: Path) -> None:
    for driver, parent, expect in (
        ("cgroupfs", "/tether-test-kubepods/pod1", "tether-test-kubepods/pod1/tether-"),
        ("systemd", "tethertest-pod1.slice", "tethertest.slice/tethertest-pod1.slice/tether-"),
    ):
        e = start_env(tmp_path / driver, driver=driver)
        try:
            e.conflist([e.bridge(), {"type": "loopback"}])
            sid = e.run("cg", cgroup_parent=parent)
            _, info = e.status(sid)
            assert info["cgroup"].startswith(expect), info["cgroup"]
            assert info["cgroup"] in Path(f"/proc/{info['pid']}/cgroup").read_text()
            e.remove(sid)
            # The parents the pod made are gone with it.
            top = expect.split("/")[0]
            assert not any(os.path.exists(os.path.join(p, top))
                           for p in cgroups.layout().mountpoints())
            # Without a parent of its own, a pod goes under the daemon's default parent.
            sid = e.run("dflt")
            assert e.status(sid)[1]["cgroup"].startswith(e.cgroup_parent + "/tether-")
            e.remove(sid)
            assert pod_cgroups(e.cgroup_parent) == []
        finally:
            stop_env(e)


# --- listing --------------------------------------------------------------------------------

def test_list_filters_and_stream(env: Env) -> None:
    a = env.run("a", labels={"app": "web", "tier": "front"})
    b = env.run("b", labels={"app": "web"})
    c = env.run("c", labels={"app": "db"})
    env.stop(c)

    def ids(f: pb.PodSandboxFilter | None = None) -> set[str]:
        req = pb.ListPodSandboxRequest(filter=f) if f else pb.ListPodSandboxRequest()
        return {i.id for i in env.cri.runtime.ListPodSandbox(req).items}

    assert ids() == {a, b, c}
    assert ids(pb.PodSandboxFilter(id=a)) == {a}
    assert ids(pb.PodSandboxFilter(id=a[:12])) == {a}
    assert ids(pb.PodSandboxFilter(label_selector={"app": "web"})) == {a, b}
    assert ids(pb.PodSandboxFilter(label_selector={"app": "web", "tier": "front"})) == {a}
    ready = pb.PodSandboxStateValue(state=pb.SANDBOX_READY)
    assert ids(pb.PodSandboxFilter(state=ready)) == {a, b}
    notready = pb.PodSandboxStateValue(state=pb.SANDBOX_NOTREADY)
    assert ids(pb.PodSandboxFilter(state=notready)) == {c}
    items = env.cri.runtime.ListPodSandbox(pb.ListPodSandboxRequest(
        filter=pb.PodSandboxFilter(id=a))).items
    assert items[0].metadata.name == "a"
    assert items[0].labels["tier"] == "front"
    assert items[0].runtime_handler == "runc"
    assert items[0].created_at > 0
    streamed = {p.id for r in env.cri.runtime.StreamPodSandboxes(
        pb.StreamPodSandboxesRequest()) for p in r.pod_sandboxes}
    assert streamed == {a, b, c}


def test_status_verbose_info(env: Env) -> None:
    sid = env.run("v")
    st, info = env.status(sid)
    assert st.id == sid and st.metadata.name == "v"
    assert info["pid"] > 0
    assert set(info["namespaces"]) == {"user", "net", "ipc", "uts", "pid"}
    assert info["namespaces"]["pid"]["mode"] == "CONTAINER"
    # no user namespace asked for: the node's
    assert info["namespaces"]["user"]["mode"] == "NODE"
    assert info["namespaces"]["user"]["inode"] == os.stat("/proc/self/ns/user").st_ino
    assert info["cniResult"]["ips"][0]["address"].startswith(st.network.ip)
    assert Path(info["sandboxDir"]).is_dir()
    with pytest.raises(grpc.RpcError) as e:
        env.status("0" * 64)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


# --- lifecycle --------------------------------------------------------------------------------

def test_stop_is_idempotent_and_unknown_ids_succeed(env: Env) -> None:
    sid = env.run()
    env.stop(sid)
    env.stop(sid)
    st, info = env.status(sid)
    assert st.state == pb.SANDBOX_NOTREADY
    assert st.network.ip == ""
    assert env.leases() == []  # network torn down on stop
    assert not os.path.exists(f"/proc/{info['pid']}") or _comm(str(info["pid"])) != "catatonit"
    env.stop("f" * 64)
    env.remove("f" * 64)


def test_remove_of_a_running_pod_stops_it_and_leaves_nothing(env: Env) -> None:
    before = snapshot(env)
    sid = env.run()
    env.remove(sid)
    assert snapshot(env) == before
    with pytest.raises(grpc.RpcError):
        env.status(sid)


def test_dead_pause_holder_makes_the_pod_notready(env: Env) -> None:
    sid = env.run()
    _, info = env.status(sid)
    os.kill(info["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 5
    while env.status(sid)[0].state != pb.SANDBOX_NOTREADY and time.monotonic() < deadline:
        time.sleep(0.05)
    assert env.status(sid)[0].state == pb.SANDBOX_NOTREADY
    # Namespaces are pinned: they outlive the pause-holder until removal.
    assert os.stat(info["namespaces"]["net"]["path"]).st_ino == info["namespaces"]["net"]["inode"]
    env.remove(sid)
    assert env.leases() == []


def test_stop_releases_the_ip_even_when_the_netns_pin_is_gone(env: Env) -> None:
    sid = env.run()
    _, info = env.status(sid)
    subprocess.run(["umount", info["namespaces"]["net"]["path"]], check=True)
    env.stop(sid)
    assert env.leases() == []
    env.remove(sid)


def test_leak_free_over_50_cycles(env: Env) -> None:
    before = snapshot(env)
    for i in range(50):
        sid = env.run(f"cycle{i}", pid=pb.POD if i % 2 else pb.CONTAINER,
                      sysctls={"kernel.shmmni": "100"})
        env.stop(sid)
        env.remove(sid)
    assert snapshot(env) == before


def test_parallel_runs_get_distinct_ips(env: Env) -> None:
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        ids = list(pool.map(lambda i: env.run(f"par{i}"), range(20)))
    ips = {env.status(s)[0].network.ip for s in ids}
    assert len(ips) == 20
    assert len(env.leases()) == 20


def test_run_and_stop_racing_never_leave_a_half_made_pod(env: Env) -> None:
    before = snapshot(env)
    for i in range(5):
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            fut = pool.submit(env.run, f"race{i}")
            # Stop whatever exists by then; the lock per pod serialises it with the run.
            for _ in range(50):
                items = env.cri.runtime.ListPodSandbox(pb.ListPodSandboxRequest()).items
                if items:
                    env.stop(items[0].id)
                    break
                time.sleep(0.002)
            sid = fut.result()
        st, _ = env.status(sid)
        assert st.state in (pb.SANDBOX_READY, pb.SANDBOX_NOTREADY)
        env.remove(sid)
    assert snapshot(env) == before


# --- failure paths ------------------------------------------------------------------------

def test_failing_ipam_leaves_nothing(env: Env) -> None:
    before = snapshot(env)
    ipam = {"type": "host-local", "dataDir": str(env.ipam), "ranges": [[{"subnet": SUBNET}]]}
    env.conflist([{"type": "ipam-then-fail", "ipam": ipam}])
    with pytest.raises(grpc.RpcError) as e:
        env.run("failing")
    assert "ipam-then-fail" in (e.value.details() or "")
    assert snapshot(env) == before


def test_plugin_failing_after_bridge_is_undone(env: Env) -> None:
    before = snapshot(env)
    env.conflist([env.bridge(), {"type": "fail-chained"}])
    with pytest.raises(grpc.RpcError) as e:
        env.run("chained")
    details = e.value.details() or ""
    assert "code 123" in details and "firewall says no" in details  # the plugin's own words
    assert snapshot(env) == before


def test_daemon_killed_mid_run_is_cleaned_on_restart(env: Env, tmp_path: Path) -> None:
    before = snapshot(env)
    record = tmp_path / "record"
    record.mkdir()
    env.conflist([env.bridge(), {"type": "hang", "recordDir": str(record)}])
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        fut = pool.submit(env.run, "crashy")
        deadline = time.monotonic() + 20
        while not (record / "hang.pids").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert env.leases(), "bridge ADD should have reserved an IP before the hang"
        env.daemon.kill()
        with pytest.raises(grpc.RpcError):
            fut.result()
    for pid in (record / "hang.pids").read_text().split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    env.conflist([env.bridge(), {"type": "loopback"}])
    env.daemon.start()
    env.cri = env.daemon.client()
    assert env.cri.runtime.ListPodSandbox(pb.ListPodSandboxRequest()).items == []
    after = snapshot(env)
    assert after == before


def test_ready_pods_survive_a_daemon_crash(env: Env) -> None:
    sid = env.run("keeper")
    st, info = env.status(sid)
    env.daemon.kill()
    env.daemon.start()
    env.cri = env.daemon.client()
    st2, info2 = env.status(sid)
    assert st2.state == pb.SANDBOX_READY
    assert st2.network.ip == st.network.ip
    assert info2["pid"] == info["pid"]
    # And the restarted daemon still watches it, and can tear it down.
    env.remove(sid)
    assert env.leases() == []


def test_dual_stack_ips(env: Env) -> None:
    subprocess.run(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0"], check=False)
    env.conflist([env.bridge([[{"subnet": SUBNET}], [{"subnet": "fd00:89::/64"}]]),
                  {"type": "loopback"}])
    st, _ = env.status(env.run("dual"))
    assert st.network.ip.startswith("10.89.0.")
    assert next(ip.ip for ip in st.network.additional_ips).startswith("fd00:89::")


@pytest.mark.parametrize("userns", [False, True], ids=["node-user", "pod-userns"])
def test_daemon_sigkilled_mid_burst_keeps_a_whole_store(env: Env, userns: bool) -> None:
    """SIGKILL the daemon in the middle of a burst of RunPodSandbox writes: on restart the
    database opens, passes integrity_check and holds only whole records; half-made pods are
    gone and whole ones are ready. Pods with user namespaces of their own (Tether's blocks)
    too: their pins and the helpers that made them leave nothing either."""
    import sqlite3

    before = snapshot(env)
    asked = {"annotations": {"io.tether.userns-mode": "auto"}} if userns else {}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(env.run, f"burst{i}", **asked) for i in range(16)]
        # Kill once the burst is under way: some pods made, others half-made.
        pins = env.daemon.run_dir / "ns" / "net"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(list(pins.glob("*"))) < 3:
            time.sleep(0.005)
        env.daemon.kill()
        for f in futures:
            with contextlib.suppress(grpc.RpcError):
                f.result()
    db = sqlite3.connect(env.daemon.root / "tether.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    for (doc,) in db.execute("SELECT doc FROM sandboxes"):
        rec = json.loads(doc)  # every row is a whole JSON record
        assert rec["id"] and rec["state"] in ("creating", "ready")
    db.close()
    env.daemon.start()
    env.cri = env.daemon.client()
    items = env.cri.runtime.ListPodSandbox(pb.ListPodSandboxRequest()).items
    assert all(i.state == pb.SANDBOX_READY for i in items)  # the half-made ones were undone
    blocks = set()
    for i in items:
        st, info = env.status(i.id)
        assert st.network.ip and os.path.exists(f"/proc/{info['pid']}")
        if userns:
            blocks.add(info["namespaces"]["user"]["uidMappings"][0]["host_id"])
            assert os.stat(f"/proc/{info['pid']}").st_uid in blocks
        env.remove(i.id)
    assert len(blocks) == (len(items) if userns else 0)  # one block each, none shared
    assert snapshot(env) == before


def test_daemon_killed_mid_stop_finishes_the_stop_on_restart(env: Env, tmp_path: Path) -> None:
    record = tmp_path / "record"
    record.mkdir()
    env.conflist([env.bridge(), {"type": "hang-del", "recordDir": str(record)}])
    sid = env.run("stopping")
    _, info = env.status(sid)
    assert env.leases()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        fut = pool.submit(env.stop, sid)
        deadline = time.monotonic() + 20
        while not (record / "hang-del.pids").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (record / "hang-del.pids").exists(), "DEL did not start"
        env.daemon.kill()
        with contextlib.suppress(grpc.RpcError):
            fut.result()
    for pid in (record / "hang-del.pids").read_text().split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    env.daemon.start()
    env.cri = env.daemon.client()
    st, _ = env.status(sid)
    assert st.state == pb.SANDBOX_NOTREADY  # the interrupted stop was finished at start
    assert env.leases() == []  # DEL ran (from the cached config) and released the IP
    assert _comm(str(info["pid"])) != "catatonit" or _zombie(str(info["pid"]))
    before_remove = snapshot(env)
    env.remove(sid)
    after = snapshot(env)
    assert after["pins"] == [] and after["sandboxes"] == [] and after["cgroups"] == []
    assert before_remove["leases"] == after["leases"] == []
