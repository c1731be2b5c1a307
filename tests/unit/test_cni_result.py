from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from cni.result import ResultInvalid, convert, decode_output, parse

RESULT_031: dict[str, Any] = {
    "cniVersion": "0.3.1",
    "interfaces": [{"name": "cni0", "mac": "aa:bb:cc:00:00:01"},
                   {"name": "eth0", "mac": "aa:bb:cc:00:00:02", "sandbox": "/var/run/netns/p"}],
    "ips": [{"version": "4", "interface": 1, "address": "10.22.0.5/16", "gateway": "10.22.0.1"}],
    "routes": [{"dst": "0.0.0.0/0"}],
    "dns": {},
}

RESULT_100: dict[str, Any] = {
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "cni0", "mac": "aa:bb:cc:00:00:01"},
                   {"name": "veth1", "mac": "aa:bb:cc:00:00:03"},
                   {"name": "eth0", "mac": "aa:bb:cc:00:00:02", "sandbox": "/var/run/netns/p"}],
    "ips": [{"interface": 2, "address": "10.88.0.7/24", "gateway": "10.88.0.1"},
            {"interface": 2, "address": "fd00:10:88::7/64", "gateway": "fd00:10:88::1"},
            {"address": "192.0.2.9/32"}],
}


def test_parse_031() -> None:
    r = parse("net", RESULT_031)
    assert r.network_name == "net"
    assert r.cni_version == "0.3.1"
    assert len(r.ips) == 1
    ip = r.ips[0]
    assert ip.address == ipaddress.ip_interface("10.22.0.5/16")
    assert ip.gateway == ipaddress.ip_address("10.22.0.1")
    assert ip.interface == 1
    assert r.interfaces[1].sandbox == "/var/run/netns/p"
    assert r.raw is RESULT_031


def test_parse_040() -> None:
    r = parse("net", {**RESULT_031, "cniVersion": "0.4.0"})
    assert r.cni_version == "0.4.0"
    assert str(r.ips[0].address) == "10.22.0.5/16"


def test_parse_100_dual_stack_and_no_gateway() -> None:
    r = parse("net", RESULT_100)
    assert [str(ip.address) for ip in r.ips] == ["10.88.0.7/24", "fd00:10:88::7/64",
                                                  "192.0.2.9/32"]
    assert r.ips[1].address.version == 6
    assert r.ips[1].gateway == ipaddress.ip_address("fd00:10:88::1")
    assert r.ips[2].gateway is None and r.ips[2].interface is None
    assert [i.name for i in r.interfaces] == ["cni0", "veth1", "eth0"]
    assert [str(ip.address) for ip in r.sandbox_ips()] == [
        "10.88.0.7/24", "fd00:10:88::7/64", "192.0.2.9/32"]


def test_sandbox_ips_skips_host_side_interfaces() -> None:
    doc = {**RESULT_100, "ips": [{"interface": 0, "address": "10.88.0.1/24"},
                                 {"interface": 2, "address": "10.88.0.7/24"}]}
    assert [str(ip.address) for ip in parse("n", doc).sandbox_ips()] == ["10.88.0.7/24"]


def test_parse_110_and_empty() -> None:
    r = parse("net", {"cniVersion": "1.1.0"})
    assert r.ips == () and r.interfaces == ()


@pytest.mark.parametrize("doc", [
    {"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.2/24"}},
    {"cniVersion": "1.0.0", "ips": [{"address": "not-an-ip"}]},
    {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24", "gateway": "x"}]},
    {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24", "interface": 3}]},
    {"cniVersion": "1.0.0", "ips": {"address": "10.0.0.2/24"}},
    {"cniVersion": "1.0.0", "interfaces": ["eth0"]},
])
def test_invalid_results(doc: dict[str, object]) -> None:
    with pytest.raises(ResultInvalid):
        parse("net", doc)


def test_decode_output_fills_missing_version() -> None:
    assert decode_output(b'{"ips": []}', "0.4.0") == {"ips": [], "cniVersion": "0.4.0"}
    assert decode_output(b"", "1.0.0") == {"cniVersion": "1.0.0"}
    assert decode_output(b'{"cniVersion": "0.3.1"}', "1.0.0")["cniVersion"] == "0.3.1"
    with pytest.raises(ResultInvalid):
        decode_output(b"oops", "1.0.0")
    with pytest.raises(ResultInvalid):
        decode_output(b"[1]", "1.0.0")


def test_convert_between_versions() -> None:
    down = convert(RESULT_100, "0.4.0")
    assert down["cniVersion"] == "0.4.0"
    assert [ip["version"] for ip in down["ips"]] == ["4", "6", "4"]
    assert "version" not in RESULT_100["ips"][0]  # input untouched
    up = convert(RESULT_031, "1.0.0")
    assert up["cniVersion"] == "1.0.0"
    assert "version" not in up["ips"][0]
    same = convert(RESULT_031, "0.4.0")
    assert same["ips"][0]["version"] == "4"
