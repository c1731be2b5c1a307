from __future__ import annotations

import json

import pytest

from cni.config import parse_conflist
from cni.invoke import MINIMAL_PATH, Invocation
from cni.runtime import (
    RuntimeConf,
    format_cni_args,
    plugin_stdin,
    pod_capability_args,
    validate_ifname,
)
from cni.types import Bandwidth, DNSConfig, PodNetwork, PortMapping
from shim.errors import InvalidArgument

POD = PodNetwork(
    sandbox_id="abc123", netns_path="/var/run/netns/x", pod_name="web-0",
    pod_namespace="shop", pod_uid="5d1f-uid",
    port_mappings=(PortMapping(80, 8080, "TCP", "127.0.0.1"), PortMapping(53, 5353, "udp"),
                   PortMapping(9090, 0)),
    bandwidth=Bandwidth(ingress_rate=1_000_000, ingress_burst=2_000_000,
                        egress_rate=3_000_000, egress_burst=4_000_000),
    dns=DNSConfig(servers=("10.96.0.10",), searches=("shop.svc.cluster.local",),
                  options=("ndots:5",)),
)

NET = parse_conflist(json.dumps({
    "cniVersion": "1.0.0", "name": "podnet",
    "plugins": [
        {"type": "bridge", "bridge": "cni0", "runtimeConfig": {"stale": 1}},
        {"type": "portmap", "capabilities": {"portMappings": True, "bandwidth": False},
         "snat": True},
        {"type": "bandwidth", "capabilities": {"bandwidth": True, "dns": True, "ips": True},
         "runtimeConfig": {"old": True}},
    ],
}).encode())


def test_cni_args_string() -> None:
    rt = RuntimeConf.for_pod(POD)
    assert format_cni_args(rt.cni_args) == (
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;"
        "K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=5d1f-uid")


def test_capability_args_shapes() -> None:
    caps = pod_capability_args(POD)
    assert caps == {
        "portMappings": [
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"},
            {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": ""},
        ],
        "bandwidth": {"ingressRate": 1_000_000, "ingressBurst": 2_000_000,
                      "egressRate": 3_000_000, "egressBurst": 4_000_000},
        "dns": {"servers": ["10.96.0.10"], "searches": ["shop.svc.cluster.local"],
                "options": ["ndots:5"]},
    }
    bare = PodNetwork("id", "/ns", "p", "n", "u")
    assert pod_capability_args(bare) == {}


def test_runtime_config_only_for_declared_capabilities() -> None:
    caps = pod_capability_args(POD)
    bridge, portmap, bandwidth = (json.loads(plugin_stdin(NET, p, None, caps))
                                  for p in NET.plugins)
    # No capabilities: its own runtimeConfig is left alone.
    assert bridge["runtimeConfig"] == {"stale": 1}
    assert portmap["runtimeConfig"] == {"portMappings": caps["portMappings"]}
    # Declared runtimeConfig replaces the file's; "ips" is declared but we have no data for it.
    assert bandwidth["runtimeConfig"] == {"bandwidth": caps["bandwidth"], "dns": caps["dns"]}
    assert portmap["snat"] is True


def test_stdin_injects_name_version_prev_result() -> None:
    plugin = parse_conflist(json.dumps({
        "cniVersion": "0.4.0", "name": "outer",
        "plugins": [{"type": "bridge", "name": "inner", "cniVersion": "0.3.0"}]}).encode())
    prev = {"cniVersion": "0.4.0", "ips": []}
    conf = json.loads(plugin_stdin(plugin, plugin.plugins[0], prev, {}))
    assert conf == {"type": "bridge", "name": "outer", "cniVersion": "0.4.0", "prevResult": prev}
    conf = json.loads(plugin_stdin(plugin, plugin.plugins[0]))
    assert "prevResult" not in conf and "runtimeConfig" not in conf


def test_invocation_env() -> None:
    inv = Invocation("ADD", container_id="abc", netns="/ns", ifname="eth0",
                     cni_args="IgnoreUnknown=1", cni_path="/a:/b")
    assert inv.env() == {
        "PATH": MINIMAL_PATH, "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "abc",
        "CNI_NETNS": "/ns", "CNI_IFNAME": "eth0", "CNI_ARGS": "IgnoreUnknown=1",
        "CNI_PATH": "/a:/b",
    }


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a:b", "a b", "x" * 16])
def test_invalid_ifnames(name: str) -> None:
    with pytest.raises(InvalidArgument):
        validate_ifname(name)


def test_valid_ifname_and_bad_sandbox_id() -> None:
    validate_ifname("x" * 15)
    with pytest.raises(InvalidArgument, match="sandbox id"):
        RuntimeConf.for_pod(PodNetwork("-bad id", "/ns", "p", "n", "u"))
