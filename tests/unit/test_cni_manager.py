"""CNIManager against scripted fake plugins (Python scripts, no root, no netns needed)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cni.errors import CNIPluginFailed, CNIPluginUnavailable
from cni.manager import CNIManager
from cni.types import Bandwidth, PodNetwork, PortMapping
from shim.errors import DeadlineExceeded, FailedPrecondition, NotFound

FAKE_PLUGIN = '''#!{python}
import json, os, sys, time
command = os.environ["CNI_COMMAND"]
raw = sys.stdin.read()
conf = json.loads(raw) if raw.strip() else {{}}
if command == "VERSION":
    print(json.dumps({{"cniVersion": "1.1.0", "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]}}))
    sys.exit(0)
if conf.get("record"):
    name = "%d-%s-%s.json" % (time.monotonic_ns(), conf["type"], command)
    with open(os.path.join(conf["record"], name), "w") as f:
        json.dump({{"env": dict(os.environ), "conf": conf, "pid": os.getpid()}}, f)
fail = conf.get("fail", {{}}).get(command)
if fail:
    if "stderr" in fail:
        sys.stderr.write(fail["stderr"])
    else:
        print(json.dumps({{"cniVersion": conf["cniVersion"], **fail}}))
    sys.exit(fail.get("exit", 1))
if command in conf.get("hang", []):
    time.sleep(600)
if command == "ADD":
    res = conf.get("prevResult") or {{"cniVersion": conf["cniVersion"],
                                      "interfaces": [], "ips": []}}
    if conf.get("addIP"):
        res["interfaces"].append({{"name": os.environ["CNI_IFNAME"],
                                   "sandbox": os.environ["CNI_NETNS"]}})
        res["ips"].append({{"address": conf["addIP"], "interface": len(res["interfaces"]) - 1}})
    print(json.dumps(res))
'''

POD = PodNetwork(sandbox_id="sb1", netns_path="/var/run/netns/sb1", pod_name="web",
                 pod_namespace="shop", pod_uid="uid-1",
                 port_mappings=(PortMapping(80, 8080),), bandwidth=Bandwidth(ingress_rate=1000))


class Env:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.conf_dir = root / "net.d"
        self.cache_dir = root / "cache"
        self.record = root / "record"
        for d in (self.bin, self.conf_dir, self.record):
            d.mkdir()
        script = FAKE_PLUGIN.format(python=sys.executable)
        for name in ("alpha", "beta", "gamma"):
            p = self.bin / name
            p.write_text(script)
            p.chmod(0o755)

    def conflist(self, plugins: list[dict[str, Any]], version: str = "1.0.0",
                 name: str = "podnet", filename: str = "10-podnet.conflist",
                 **extra: Any) -> bytes:
        for p in plugins:
            p.setdefault("record", str(self.record))
        data = json.dumps({"cniVersion": version, "name": name, "plugins": plugins,
                           **extra}).encode()
        (self.conf_dir / filename).write_bytes(data)
        return data

    def manager(self, timeout: float = 10.0) -> CNIManager:
        return CNIManager(str(self.conf_dir), [str(self.root / "nothing"), str(self.bin)],
                          str(self.cache_dir), timeout=timeout)

    def calls(self) -> list[dict[str, Any]]:
        out = []
        for name in sorted(os.listdir(self.record), key=lambda n: int(n.split("-")[0])):
            doc = json.loads((self.record / name).read_text())
            doc["who"] = f"{doc['conf']['type']} {doc['env']['CNI_COMMAND']}"
            out.append(doc)
        for name in os.listdir(self.record):
            os.unlink(self.record / name)
        return out

    def cache_file(self, name: str = "podnet") -> Path:
        return self.cache_dir / "results" / f"{name}-sb1-eth0"


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def test_add_chains_prev_result_and_caches(env: Env) -> None:
    data = env.conflist([
        {"type": "alpha", "addIP": "10.1.0.5/24"},
        {"type": "beta", "capabilities": {"portMappings": True}},
        {"type": "gamma", "capabilities": {"bandwidth": True}},
    ])
    m = env.manager()
    res = asyncio.run(m.add(POD))
    assert [str(ip.address) for ip in res.ips] == ["10.1.0.5/24"]
    assert res.network_name == "podnet" and res.cni_version == "1.0.0"

    calls = env.calls()
    assert [c["who"] for c in calls] == ["alpha ADD", "beta ADD", "gamma ADD"]
    e = calls[0]["env"]
    assert {k: e[k] for k in e if k.startswith("CNI_")} == {
        "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "sb1", "CNI_NETNS": "/var/run/netns/sb1",
        "CNI_IFNAME": "eth0", "CNI_PATH": f"{env.root / 'nothing'}:{env.bin}",
        "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web;"
                    "K8S_POD_INFRA_CONTAINER_ID=sb1;K8S_POD_UID=uid-1",
    }
    assert e["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert "prevResult" not in calls[0]["conf"] and "runtimeConfig" not in calls[0]["conf"]
    assert calls[1]["conf"]["prevResult"]["ips"][0]["address"] == "10.1.0.5/24"
    assert calls[1]["conf"]["runtimeConfig"] == {"portMappings": [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": ""}]}
    assert calls[2]["conf"]["runtimeConfig"] == {"bandwidth": {
        "ingressRate": 1000, "ingressBurst": 0, "egressRate": 0, "egressBurst": 0}}
    assert all(c["conf"]["name"] == "podnet" for c in calls)

    doc = json.loads(env.cache_file().read_text())
    assert doc["kind"] == "cniCacheV1"
    assert base64.b64decode(doc["config"]) == data
    assert doc["result"] == dict(res.raw)
    assert doc["cniArgs"][0] == ["IgnoreUnknown", "1"]
    assert set(doc["capabilityArgs"]) == {"portMappings", "bandwidth"}

    cached = m.cached_result("sb1")
    assert cached is not None and cached.ips == res.ips
    assert m.cached_result("other") is None


def test_del_reverse_with_cached_prev_result_then_cache_removed(env: Env) -> None:
    env.conflist([{"type": "alpha", "addIP": "10.1.0.5/24"}, {"type": "beta"}])
    m = env.manager()
    asyncio.run(m.add(POD))
    env.calls()
    asyncio.run(m.delete(POD))
    calls = env.calls()
    assert [c["who"] for c in calls] == ["beta DEL", "alpha DEL"]
    assert all(c["conf"]["prevResult"]["ips"][0]["address"] == "10.1.0.5/24" for c in calls)
    assert not env.cache_file().exists()
    # Again, without cache: plain DEL, no prevResult, no error.
    asyncio.run(m.delete(POD))
    calls = env.calls()
    assert [c["who"] for c in calls] == ["beta DEL", "alpha DEL"]
    assert all("prevResult" not in c["conf"] for c in calls)


def test_del_uses_config_and_args_cached_at_add(env: Env) -> None:
    env.conflist([{"type": "alpha", "addIP": "10.1.0.5/24"}, {"type": "beta"}], version="0.4.0")
    m = env.manager()
    asyncio.run(m.add(POD))
    env.calls()
    # The admin switches the node to another network; the pod was attached to the old one.
    os.unlink(env.conf_dir / "10-podnet.conflist")
    env.conflist([{"type": "gamma"}], name="othernet", filename="05-other.conflist")
    m = env.manager()
    assert m.network() is not None and m.network().name == "othernet"  # type: ignore[union-attr]
    other_pod = PodNetwork("sb1", "/gone", "web", "shop", "uid-1")  # no capability args now
    asyncio.run(m.delete(other_pod))
    calls = env.calls()
    assert [c["who"] for c in calls] == ["beta DEL", "alpha DEL"]
    assert calls[0]["conf"]["name"] == "podnet"
    assert calls[0]["conf"]["prevResult"]["cniVersion"] == "0.4.0"
    assert not env.cache_file().exists()


def test_del_before_040_has_no_prev_result(env: Env) -> None:
    env.conflist([{"type": "alpha", "addIP": "10.1.0.5/24"}], version="0.3.1")
    m = env.manager()
    asyncio.run(m.add(POD))
    env.calls()
    asyncio.run(m.delete(POD))
    (call,) = env.calls()
    assert "prevResult" not in call["conf"]
    assert not env.cache_file().exists()


def test_failed_add_rolls_back_whole_chain(env: Env) -> None:
    env.conflist([
        {"type": "alpha", "addIP": "10.1.0.5/24"},
        {"type": "beta", "fail": {"ADD": {"code": 11, "msg": "no widgets",
                                          "details": "pool empty"}}},
        {"type": "gamma"},
    ])
    m = env.manager()
    with pytest.raises(CNIPluginUnavailable) as exc:
        asyncio.run(m.add(POD))
    assert exc.value.message == "CNI plugin beta failed (ADD): code 11: no widgets; pool empty"
    assert (exc.value.plugin, exc.value.command, exc.value.cni_code) == ("beta", "ADD", 11)
    calls = env.calls()
    assert [c["who"] for c in calls] == ["alpha ADD", "beta ADD",
                                         "gamma DEL", "beta DEL", "alpha DEL"]
    # The rollback DEL gets the last good result.
    assert calls[-1]["conf"]["prevResult"]["ips"][0]["address"] == "10.1.0.5/24"
    assert not env.cache_file().exists()
    assert m.cached_result("sb1") is None


def test_rollback_failures_are_noted_not_raised(env: Env) -> None:
    env.conflist([
        {"type": "alpha", "fail": {"DEL": {"code": 7, "msg": "cannot delete"}}},
        {"type": "beta", "fail": {"ADD": {"code": 200, "msg": "broken"}}},
    ])
    with pytest.raises(CNIPluginFailed) as exc:
        asyncio.run(env.manager().add(POD))
    assert exc.value.message == "CNI plugin beta failed (ADD): code 200: broken"
    assert exc.value.detail is not None
    assert "rollback (DEL) also failed: CNI plugin alpha failed (DEL): code 7: cannot delete" \
        in exc.value.detail


def test_non_json_failure_includes_stderr(env: Env) -> None:
    env.conflist([{"type": "alpha", "fail": {"ADD": {"stderr": "panic: oh no\n", "exit": 2}}}])
    with pytest.raises(CNIPluginFailed) as exc:
        asyncio.run(env.manager().add(POD))
    assert exc.value.message == "CNI plugin alpha failed (ADD): exit status 2: panic: oh no"
    assert exc.value.cni_code is None


def test_del_error_keeps_cache_for_retry(env: Env) -> None:
    env.conflist([{"type": "alpha", "addIP": "10.1.0.5/24"}])
    m = env.manager()
    asyncio.run(m.add(POD))
    env.conflist([{"type": "alpha", "fail": {"DEL": {"code": 5, "msg": "io"}}}])
    # DEL works from the cached config, so change the cache's config instead.
    doc = json.loads(env.cache_file().read_text())
    cached_conf = json.loads(base64.b64decode(doc["config"]))
    cached_conf["plugins"][0]["fail"] = {"DEL": {"code": 5, "msg": "io"}}
    doc["config"] = base64.b64encode(json.dumps(cached_conf).encode()).decode()
    env.cache_file().write_text(json.dumps(doc))
    with pytest.raises(CNIPluginFailed, match=r"alpha failed \(DEL\): code 5: io"):
        asyncio.run(m.delete(POD))
    assert env.cache_file().exists()


def test_timeout_kills_plugin(env: Env) -> None:
    env.conflist([{"type": "alpha", "hang": ["ADD"]}])
    m = env.manager(timeout=1.0)
    start = time.monotonic()
    with pytest.raises(DeadlineExceeded) as exc:
        asyncio.run(m.add(POD))
    assert time.monotonic() - start < 8
    assert exc.value.message == "CNI plugin alpha timed out after 1s (ADD)"
    calls = env.calls()
    assert [c["who"] for c in calls] == ["alpha ADD", "alpha DEL"]
    with pytest.raises(ProcessLookupError):
        os.kill(calls[0]["pid"], 0)  # killed and reaped
    assert not env.cache_file().exists()


def test_check(env: Env) -> None:
    env.conflist([{"type": "alpha", "addIP": "10.1.0.5/24"}, {"type": "beta"}])
    m = env.manager()
    with pytest.raises(NotFound):
        asyncio.run(m.check(POD))
    asyncio.run(m.add(POD))
    env.calls()
    asyncio.run(m.check(POD))
    calls = env.calls()
    assert [c["who"] for c in calls] == ["alpha CHECK", "beta CHECK"]
    assert all(c["conf"]["prevResult"]["ips"][0]["address"] == "10.1.0.5/24" for c in calls)


def test_check_failure_and_disable_check(env: Env) -> None:
    env.conflist([{"type": "alpha", "fail": {"CHECK": {"code": 3, "msg": "veth gone"}}}])
    m = env.manager()
    asyncio.run(m.add(POD))
    with pytest.raises(CNIPluginFailed, match="code 3: veth gone"):
        asyncio.run(m.check(POD))
    asyncio.run(m.delete(POD))
    env.conflist([{"type": "alpha", "fail": {"CHECK": {"code": 3, "msg": "veth gone"}}}],
                 disableCheck=True)
    m = env.manager()
    asyncio.run(m.add(POD))
    env.calls()
    asyncio.run(m.check(POD))
    assert env.calls() == []


def test_status(env: Env) -> None:
    m = env.manager()
    assert asyncio.run(m.status()) == (False, f"no valid CNI network config in {env.conf_dir}")

    env.conflist([{"type": "alpha"}, {"type": "beta"}], version="1.1.0")
    m = env.manager()
    assert asyncio.run(m.status()) == (True, "")
    calls = env.calls()
    assert [c["who"] for c in calls] == ["alpha STATUS", "beta STATUS"]
    assert calls[0]["env"]["CNI_CONTAINERID"] == "" and calls[0]["env"]["CNI_NETNS"] == ""
    assert calls[0]["conf"]["name"] == "podnet" and calls[0]["conf"]["cniVersion"] == "1.1.0"

    env.conflist([{"type": "alpha", "fail": {"STATUS": {"code": 50, "msg": "no routes yet"}}}],
                 version="1.1.0")
    m = env.manager()
    ok, reason = asyncio.run(m.status())
    assert not ok
    assert reason == "CNI network podnet not ready: CNI plugin alpha failed (STATUS): " \
                     "code 50: no routes yet"
    env.calls()

    # Before 1.1.0 there is no STATUS: a valid config is all it takes.
    env.conflist([{"type": "alpha", "fail": {"STATUS": {"code": 50, "msg": "x"}}}])
    m = env.manager()
    assert asyncio.run(m.status()) == (True, "")
    assert env.calls() == []


def test_missing_plugin_and_missing_network(env: Env) -> None:
    m = env.manager()
    with pytest.raises(FailedPrecondition, match="CNI network not ready"):
        asyncio.run(m.add(POD))
    # No network and no cache: DEL has nothing to do and does not fail.
    asyncio.run(m.delete(POD))

    env.conflist([{"type": "alpha", "addIP": "10.1.0.5/24"}])
    m = env.manager()
    asyncio.run(m.add(POD))
    os.unlink(env.bin / "alpha")
    with pytest.raises(FailedPrecondition) as exc:
        asyncio.run(m.delete(POD))
    assert exc.value.message == (f'CNI plugin "alpha" not found in {env.root / "nothing"}, '
                                 f"{env.bin}")


def test_invalid_add_result_is_rolled_back(env: Env) -> None:
    env.conflist([{"type": "alpha", "addIP": "bogus"}])
    with pytest.raises(Exception, match="invalid result"):
        asyncio.run(env.manager().add(POD))
    assert [c["who"] for c in env.calls()] == ["alpha ADD", "alpha DEL"]
    assert not env.cache_file().exists()


def test_corrupt_cache_is_dropped_on_delete(env: Env) -> None:
    env.conflist([{"type": "alpha", "addIP": "10.1.0.5/24"}])
    m = env.manager()
    asyncio.run(m.add(POD))
    env.cache_file().write_text("{corrupt")
    env.calls()
    asyncio.run(m.delete(POD))
    (call,) = env.calls()
    assert "prevResult" not in call["conf"]
    assert not env.cache_file().exists()


def test_concurrent_operations_on_one_sandbox_are_serialised(env: Env) -> None:
    env.conflist([{"type": "alpha", "addIP": "10.1.0.5/24"}])
    m = env.manager()

    async def both() -> None:
        await asyncio.gather(m.add(POD), m.delete(POD))

    asyncio.run(both())
    assert [c["who"] for c in env.calls()] == ["alpha ADD", "alpha DEL"]
    assert not env.cache_file().exists()
