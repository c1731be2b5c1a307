"""CNIManager with the real CNI plugins (bridge, host-local, portmap, loopback).

Run inside a throwaway network namespace, e.g.::

    unshare --net --fork -- bash -c 'ip link set lo up && pytest tests/integration/test_cni.py'

Refuses (fails) in the machine's root network namespace: bridges, veths and iptables rules are
only ever made in the private one. Pod namespaces are pinned on files in the test's tmp dir.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cni.errors import CNIPluginFailed, CNIPluginUnavailable
from cni.manager import CNIManager
from cni.types import PodNetwork, PortMapping
from shim.errors import DeadlineExceeded
from tests.integration.cni_helpers import (
    SYSTEM_CNI_DIR,
    PodNetns,
    bridge_plugin,
    in_private_netns,
    install_fake_plugins,
    reservations,
    run,
    tcp_echo,
    write_conflist,
)

pytestmark = pytest.mark.skipif(not os.path.exists(f"{SYSTEM_CNI_DIR}/bridge"),
                                reason=f"CNI plugins not installed in {SYSTEM_CNI_DIR}")

NET = "tethertest"
_ids = itertools.count(1)


class Env:
    def __init__(self, root: Path) -> None:
        self.n = next(_ids)
        self.root = root
        self.conf_dir = root / "net.d"
        self.cache_dir = root / "cache"
        self.data_dir = root / "ipam"
        self.record_dir = root / "record"
        self.record_dir.mkdir()
        self.ns_dir = root / "ns"
        self.ns_dir.mkdir()
        self.fake_dir = install_fake_plugins(root / "fakebin")
        self.bridge = f"tbr{self.n}"
        self.subnet = f"10.77.{self.n}.0/24"
        self.pods: list[PodNetns] = []

    def ranges(self) -> list[list[dict[str, str]]]:
        return [[{"subnet": self.subnet}]]

    def bridge_conf(self, **kw: Any) -> dict[str, Any]:
        return bridge_plugin(self.bridge, kw.pop("ranges", self.ranges()), self.data_dir, **kw)

    def conflist(self, plugins: list[dict[str, Any]], version: str = "1.0.0",
                 **extra: Any) -> Path:
        return write_conflist(self.conf_dir, "10-tether.conflist", NET, plugins, version,
                              **extra)

    def manager(self, timeout: float = 30.0) -> CNIManager:
        return CNIManager(str(self.conf_dir), [self.fake_dir, SYSTEM_CNI_DIR],
                          str(self.cache_dir), timeout=timeout)

    def pod(self, name: str, **kw: Any) -> tuple[PodNetns, PodNetwork]:
        ns = PodNetns(self.ns_dir, name)
        self.pods.append(ns)
        sandbox_id = f"{name}{self.n:04d}" + "0" * 56
        return ns, PodNetwork(sandbox_id=sandbox_id, netns_path=ns.path, pod_name=name,
                              pod_namespace="default", pod_uid=f"uid-{name}", **kw)

    def cache_file(self, pod: PodNetwork) -> Path:
        return self.cache_dir / "results" / f"{NET}-{pod.sandbox_id}-{pod.ifname}"

    def leases(self) -> list[str]:
        return reservations(self.data_dir, NET)

    def cleanup(self) -> None:
        for ns in self.pods:
            ns.destroy()
        run("ip", "link", "del", self.bridge, check=False)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    # Never make bridges, veths or iptables rules in the machine's network namespace.
    if os.geteuid() != 0 or not in_private_netns():
        pytest.fail("CNI integration tests need root inside a private network namespace "
                    "(unshare --net --fork)", pytrace=False)
    e = Env(tmp_path)
    try:
        yield e
    finally:
        e.cleanup()


def standard_plugins(env: Env) -> list[dict[str, Any]]:
    return [
        env.bridge_conf(),
        {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
        {"type": "loopback"},
    ]


def test_add_configures_pod_netns_and_caches_like_libcni(env: Env) -> None:
    conf = env.conflist(standard_plugins(env))
    m = env.manager()
    assert m.ready() == (True, "")
    ns, pod = env.pod("web", port_mappings=(PortMapping(80, 18080),))

    res = asyncio.run(m.add(pod))
    assert res.network_name == NET and res.cni_version == "1.0.0"
    assert len(res.ips) == 1
    ip = res.ips[0]
    assert str(ip.address.network) == env.subnet
    assert str(ip.gateway) == env.subnet.replace("0/24", "1")
    assert ip.interface is not None and res.interfaces[ip.interface].name == "eth0"
    assert res.interfaces[ip.interface].sandbox == ns.path

    assert ns.addresses("eth0") == {str(ip.address)}
    lo = ns.link("lo")
    assert lo is not None and "UP" in lo["flags"]
    assert env.leases() == [str(ip.address.ip)]

    doc = json.loads(env.cache_file(pod).read_text())
    assert doc["kind"] == "cniCacheV1"
    assert doc["containerId"] == pod.sandbox_id
    assert doc["ifName"] == "eth0" and doc["networkName"] == NET
    assert base64.b64decode(doc["config"]) == conf.read_bytes()
    assert ["K8S_POD_NAME", "web"] in doc["cniArgs"]
    assert doc["capabilityArgs"]["portMappings"][0]["hostPort"] == 18080
    assert doc["result"] == dict(res.raw)
    cached = m.cached_result(pod.sandbox_id)
    assert cached is not None and cached.ips == res.ips

    asyncio.run(m.delete(pod))
    assert env.leases() == []
    assert not env.cache_file(pod).exists()
    assert ns.link("eth0") is None
    assert pod.sandbox_id[:12] not in run("iptables-save", "-t", "nat").stdout


def test_check_passes_and_detects_missing_interface(env: Env) -> None:
    # portmap 1.1.x fails CHECK for IPv4-only pods (containernetworking/plugins#819), so the
    # CHECK chain here is bridge + loopback; portmap's CHECK is covered by disableCheck below.
    env.conflist([env.bridge_conf(), {"type": "loopback"}])
    m = env.manager()
    ns, pod = env.pod("chk")
    asyncio.run(m.add(pod))
    asyncio.run(m.check(pod))
    ns.exec("ip", "link", "del", "eth0")
    with pytest.raises(CNIPluginFailed, match=r"CNI plugin bridge failed \(CHECK\)"):
        asyncio.run(m.check(pod))
    asyncio.run(m.delete(pod))
    assert env.leases() == []


def test_disable_check_skips_plugins(env: Env) -> None:
    env.conflist(standard_plugins(env), disableCheck=True)
    m = env.manager()
    ns, pod = env.pod("nochk")
    asyncio.run(m.add(pod))
    ns.exec("ip", "link", "del", "eth0")
    asyncio.run(m.check(pod))  # would fail if CHECK ran
    asyncio.run(m.delete(pod))
    assert env.leases() == []


def test_two_pods_get_distinct_ips_and_talk(env: Env) -> None:
    env.conflist(standard_plugins(env))
    m = env.manager()
    ns_a, pod_a = env.pod("a")
    ns_b, pod_b = env.pod("b")
    ip_a = asyncio.run(m.add(pod_a)).ips[0].address.ip
    ip_b = asyncio.run(m.add(pod_b)).ips[0].address.ip
    assert ip_a != ip_b
    assert env.leases() == sorted([str(ip_a), str(ip_b)])
    assert tcp_echo(ns_b, str(ip_b), 7000, ns_a, str(ip_b), 7000, "hi") == "pong:hi"
    assert tcp_echo(ns_a, "0.0.0.0", 7001, ns_b, str(ip_a), 7001, "yo") == "pong:yo"
    asyncio.run(m.delete(pod_a))
    asyncio.run(m.delete(pod_b))
    assert env.leases() == []


def test_host_port_reaches_pod_from_localhost(env: Env) -> None:
    # Our private netns: hostPort traffic to 127.0.0.1 needs route_localnet (portmap SNATs it).
    run("sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1")
    env.conflist(standard_plugins(env))
    m = env.manager()
    ns, pod = env.pod("hp", port_mappings=(PortMapping(8080, 18081, "TCP"),))
    ip = asyncio.run(m.add(pod)).ips[0].address.ip
    assert tcp_echo(ns, "0.0.0.0", 8080, None, "127.0.0.1", 18081, "via-portmap") == \
        "pong:via-portmap"
    assert f"{ip}:8080" in run("iptables-save", "-t", "nat").stdout
    asyncio.run(m.delete(pod))
    assert f"{ip}:8080" not in run("iptables-save", "-t", "nat").stdout
    assert env.leases() == []


def test_delete_with_netns_gone_releases_ip(env: Env) -> None:
    env.conflist(standard_plugins(env))
    m = env.manager()
    ns, pod = env.pod("gone", port_mappings=(PortMapping(80, 18082),))
    asyncio.run(m.add(pod))
    assert len(env.leases()) == 1
    ns.destroy()
    assert not os.path.exists(pod.netns_path)
    asyncio.run(m.delete(pod))
    assert env.leases() == []
    assert not env.cache_file(pod).exists()
    asyncio.run(m.delete(pod))  # idempotent


def test_delete_without_cache_releases_ip(env: Env) -> None:
    env.conflist(standard_plugins(env))
    m = env.manager()
    ns, pod = env.pod("nocache")
    asyncio.run(m.add(pod))
    env.cache_file(pod).unlink()
    asyncio.run(m.delete(pod))
    assert env.leases() == []
    assert ns.link("eth0") is None


def test_ipam_plugin_error_reaches_caller_and_nothing_is_left(env: Env) -> None:
    env.conflist([{"type": "ipam-then-fail",
                   "ipam": {"type": "host-local", "dataDir": str(env.data_dir),
                            "ranges": env.ranges()}}])
    m = env.manager()
    _, pod = env.pod("ipamfail")
    with pytest.raises(CNIPluginUnavailable) as exc:
        asyncio.run(m.add(pod))
    assert exc.value.message == ("CNI plugin ipam-then-fail failed (ADD): code 11: "
                                 "widget pool exhausted; 0 of 3 widgets free")
    assert env.leases() == []
    assert not env.cache_file(pod).exists()


def test_chained_failure_undoes_bridge(env: Env) -> None:
    env.conflist([env.bridge_conf(), {"type": "fail-chained"}])
    m = env.manager()
    ns, pod = env.pod("chain")
    with pytest.raises(CNIPluginFailed) as exc:
        asyncio.run(m.add(pod))
    msg = exc.value.message
    assert msg.startswith("CNI plugin fail-chained failed (ADD): code 123: firewall says no; "
                          f"prevResult ips: {env.subnet.rsplit('.', 1)[0]}.")
    assert env.leases() == []
    assert ns.link("eth0") is None
    assert not env.cache_file(pod).exists()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_hanging_plugin_times_out_and_is_killed(env: Env) -> None:
    env.conflist([env.bridge_conf(), {"type": "hang", "recordDir": str(env.record_dir)}])
    m = env.manager(timeout=2.0)
    ns, pod = env.pod("hang")
    start = time.monotonic()
    with pytest.raises(DeadlineExceeded) as exc:
        asyncio.run(m.add(pod))
    assert time.monotonic() - start < 15
    assert exc.value.message == "CNI plugin hang timed out after 2s (ADD)"
    pids = [int(p) for p in (env.record_dir / "hang.pids").read_text().split()]
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids), "plugin or its child survived the timeout"
    assert env.leases() == []  # bridge's ADD was undone
    assert ns.link("eth0") is None
    assert not env.cache_file(pod).exists()


def test_runtime_config_cni_args_and_prev_result_reach_plugins(env: Env) -> None:
    rec = str(env.record_dir)
    env.conflist([
        env.bridge_conf(),
        {"type": "recorder", "recordDir": rec,
         "capabilities": {"portMappings": True, "bandwidth": True}},
        {"type": "recorder", "recordDir": rec},
    ])
    m = env.manager()
    _, pod = env.pod("rec", port_mappings=(PortMapping(53, 5353, "UDP", "127.0.0.1"),))
    res = asyncio.run(m.add(pod))
    asyncio.run(m.check(pod))
    asyncio.run(m.delete(pod))
    calls = [json.loads((env.record_dir / n).read_text())
             for n in sorted(os.listdir(rec), key=lambda n: int(n.split("-")[0]))]
    assert [c["env"]["CNI_COMMAND"] for c in calls] == ["ADD", "ADD", "CHECK", "CHECK",
                                                        "DEL", "DEL"]
    first = calls[0]
    assert first["env"]["CNI_ARGS"] == (
        f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=rec;"
        f"K8S_POD_INFRA_CONTAINER_ID={pod.sandbox_id};K8S_POD_UID=uid-rec")
    assert first["env"]["CNI_PATH"] == f"{env.fake_dir}:{SYSTEM_CNI_DIR}"
    assert first["config"]["runtimeConfig"] == {"portMappings": [
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}]}
    assert "runtimeConfig" not in calls[1]["config"]
    # bridge's result flows down the chain, and the cached final result comes back for
    # CHECK and DEL.
    assert first["config"]["prevResult"]["ips"] == list(res.raw["ips"])
    for c in calls[2:]:
        assert c["config"]["prevResult"] == dict(res.raw)
    assert env.leases() == []


def test_status(env: Env) -> None:
    m = env.manager()
    ok, reason = asyncio.run(m.status())
    assert not ok and reason == f"no valid CNI network config in {env.conf_dir}"

    env.conflist(standard_plugins(env))
    m = env.manager()
    assert asyncio.run(m.status()) == (True, "")  # 1.0.0: no STATUS command, config valid

    rec = str(env.record_dir)
    env.conflist([{"type": "recorder", "recordDir": rec},
                  {"type": "recorder", "recordDir": rec}], version="1.1.0")
    m = env.manager()
    assert asyncio.run(m.status()) == (True, "")
    assert sorted(n.split("-", 1)[1] for n in os.listdir(rec)) == ["STATUS.json"] * 2

    env.conflist([{"type": "recorder", "statusError": "waiting for routes"}], version="1.1.0")
    m = env.manager()
    ok, reason = asyncio.run(m.status())
    assert not ok
    assert reason == (f"CNI network {NET} not ready: CNI plugin recorder failed (STATUS): "
                      "code 50: waiting for routes; recorder says no")


def _plugin_versions() -> list[str]:
    out = subprocess.run([f"{SYSTEM_CNI_DIR}/bridge"], input="{}", capture_output=True,
                         text=True, env={"CNI_COMMAND": "VERSION"}, timeout=10)
    versions: list[str] = json.loads(out.stdout)["supportedVersions"]
    return versions


def test_status_with_system_plugins(env: Env) -> None:
    if "1.1.0" not in _plugin_versions():
        pytest.skip("system CNI plugins predate spec 1.1.0 (no STATUS); covered by the fake")
    env.conflist([env.bridge_conf(), {"type": "loopback"}], version="1.1.0")
    assert asyncio.run(env.manager().status()) == (True, "")


def _ipv6_usable() -> str | None:
    if not os.path.exists("/proc/sys/net/ipv6"):
        return "kernel without IPv6"
    r = run("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0", check=False)
    return None if r.returncode == 0 else f"cannot enable IPv6: {r.stderr.strip()}"


def test_dual_stack(env: Env) -> None:
    why = _ipv6_usable()
    if why:
        pytest.skip(why)
    v6 = f"fd00:77:{env.n}::/64"
    env.conflist([env.bridge_conf(ranges=[[{"subnet": env.subnet}], [{"subnet": v6}]],
                             routes=[{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]),
                  {"type": "loopback"}])
    m = env.manager()
    ns, pod = env.pod("dual")
    res = asyncio.run(m.add(pod))
    assert sorted(ip.address.version for ip in res.ips) == [4, 6]
    assert ns.addresses("eth0") == {str(ip.address) for ip in res.ips}
    assert len(env.leases()) == 2
    asyncio.run(m.delete(pod))
    assert env.leases() == []
