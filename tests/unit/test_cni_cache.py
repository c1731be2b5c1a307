from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from cni.cache import CacheCorrupt, CacheEntry, ResultCache

CONFIG = b'{"cniVersion":"1.0.0","name":"podnet","plugins":[{"type":"bridge"}]}'
RESULT = {"cniVersion": "1.0.0", "ips": [{"address": "10.88.0.2/24"}]}


def entry(**kw: object) -> CacheEntry:
    base: dict[str, object] = dict(
        container_id="sb1", network_name="podnet", ifname="eth0", config=CONFIG,
        netns="/run/netns/p1",
        cni_args=[("IgnoreUnknown", "1"), ("K8S_POD_NAME", "web")],
        capability_args={"portMappings": [{"hostPort": 8080, "containerPort": 80,
                                           "protocol": "tcp", "hostIP": ""}]},
        result=RESULT)
    base.update(kw)
    return CacheEntry(**base)  # type: ignore[arg-type]


def test_libcni_file_name_and_format(tmp_path: Path) -> None:
    cache = ResultCache(str(tmp_path))
    cache.write(entry())
    path = tmp_path / "results" / "podnet-sb1-eth0"
    doc = json.loads(path.read_text())
    assert doc == {
        "kind": "cniCacheV1",
        "containerId": "sb1",
        "config": base64.b64encode(CONFIG).decode(),
        "ifName": "eth0",
        "networkName": "podnet",
        "netns": "/run/netns/p1",
        "cniArgs": [["IgnoreUnknown", "1"], ["K8S_POD_NAME", "web"]],
        "capabilityArgs": {"portMappings": [{"hostPort": 8080, "containerPort": 80,
                                             "protocol": "tcp", "hostIP": ""}]},
        "result": RESULT,
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "results").stat().st_mode) == 0o700
    assert os.listdir(tmp_path / "results") == ["podnet-sb1-eth0"]  # no temp files left


def test_omitempty_fields(tmp_path: Path) -> None:
    cache = ResultCache(str(tmp_path))
    cache.write(entry(netns="", cni_args=[], capability_args={}))
    doc = json.loads((tmp_path / "results" / "podnet-sb1-eth0").read_text())
    assert set(doc) == {"kind", "containerId", "config", "ifName", "networkName", "result"}


def test_round_trip_find_remove(tmp_path: Path) -> None:
    cache = ResultCache(str(tmp_path))
    assert cache.read("podnet", "sb1", "eth0") is None
    assert cache.find("sb1") == []
    cache.write(entry())
    cache.write(entry(ifname="net1"))
    cache.write(entry(container_id="sb10"))
    got = cache.read("podnet", "sb1", "eth0")
    assert got == entry()
    assert [e.ifname for e in cache.find("sb1")] == ["eth0", "net1"]
    assert [e.ifname for e in cache.find("sb1", "net1")] == ["net1"]
    cache.remove("podnet", "sb1", "eth0")
    cache.remove("podnet", "sb1", "eth0")  # idempotent
    assert cache.read("podnet", "sb1", "eth0") is None
    assert [e.container_id for e in cache.find("sb10")] == ["sb10"]


def test_overwrite_is_atomic_replace(tmp_path: Path) -> None:
    cache = ResultCache(str(tmp_path))
    cache.write(entry())
    cache.write(entry(result={"cniVersion": "1.0.0", "ips": []}))
    got = cache.read("podnet", "sb1", "eth0")
    assert got is not None and got.result == {"cniVersion": "1.0.0", "ips": []}


@pytest.mark.parametrize("text", [
    "garbage", '{"kind": "other"}',
    '{"kind": "cniCacheV1", "containerId": "sb1", "networkName": "podnet"}',
    '{"kind": "cniCacheV1", "containerId": "sb1", "networkName": "podnet", "ifName": "eth0",'
    ' "config": "!!notbase64"}',
])
def test_corrupt_entries(tmp_path: Path, text: str) -> None:
    cache = ResultCache(str(tmp_path))
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "podnet-sb1-eth0").write_text(text)
    with pytest.raises(CacheCorrupt):
        cache.read("podnet", "sb1", "eth0")
    assert cache.find("sb1") == []
