"""Tracing end to end: a daemon configured with [tracing] exports over OTLP/gRPC to a collector
in this process (opentelemetry-proto's TraceService, on loopback in the test netns); one pod
start through crictl (pull, runp, create, start) and a failing RPC, checked as the span tree
the collector received. And tracing off: the daemon runs pods with the opentelemetry packages
made unimportable, and refuses to start with tracing on without them (docs/tracing.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shim.cri import api_pb2 as pb
from tests.e2e.test_crictl import BUSYBOX, Crictl
from tests.rig.critest import require_tool
from tests.rig.daemon import free_port
from tests.rig.node import Node, start_node
from tests.rig.otlp import Collector, SpanRecord
from tests.rig.registry import RegistryServer

pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc")

SERVER = 2  # Span.SpanKind.SPAN_KIND_SERVER
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts" / "tracing"
# The daemon's batch processor exports every 100 ms instead of every 5 s: a quicker test.
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "100"}
# A sitecustomize that makes every opentelemetry module unimportable, as on a node where the
# `tracing` extra is not installed.
BLOCKER = """\
import sys

class _NoOpenTelemetry:
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
        return None

sys.meta_path.insert(0, _NoOpenTelemetry())
"""


def _rpc(spans: list[SpanRecord], method: str, **attrs: object) -> list[SpanRecord]:
    return [s for s in spans if s.kind == SERVER and s.attributes.get("rpc.method") == method
            and all(s.attributes.get(f"tether.{k}") == v for k, v in attrs.items())]


def _children(spans: list[SpanRecord], parent: SpanRecord) -> list[SpanRecord]:
    kids = [s for s in spans if s.parent_id == parent.span_id]
    assert all(k.trace_id == parent.trace_id for k in kids)
    # a child lies within its parent
    assert all(parent.start_ns <= k.start_ns <= k.end_ns <= parent.end_ns for k in kids), \
        [(k.name, k.start_ns, k.end_ns) for k in kids]
    return kids


def _names(spans: list[SpanRecord]) -> list[str]:
    return sorted(s.name for s in spans)


@pytest.fixture(scope="module")
def traced(critest_registry: RegistryServer, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[Crictl, Collector]]:
    binary = require_tool("crictl")
    collector = Collector().start()
    base = tmp_path_factory.mktemp("tracing")
    node = start_node(base, critest_registry, bridge="e2etrace0", subnet="10.92.0.0/24",
                      extra={"tracing": {"enabled": True, "endpoint": collector.endpoint,
                                         "service_name": "tether-e2e"}},
                      env=FAST_EXPORT)
    work = base / "work"
    work.mkdir()
    c = Crictl(binary, node, base / "crictl.yaml", work)
    c.config.write_text("")
    try:
        yield c, collector
    finally:
        node.stop()
        collector.stop()


def test_span_tree_of_one_pod_start(traced: tuple[Crictl, Collector]) -> None:
    crictl, collector = traced
    image_id = crictl.run("pull", BUSYBOX, timeout=120).stdout.strip().rsplit(" ", 1)[1]
    pod = crictl.pod_config("traced")
    sid = crictl.out("runp", pod).strip()
    cid = crictl.out("create", sid, crictl.ctr_config("c", ["sleep", "600"]), pod).strip()
    crictl.run("start", cid)
    bad = crictl.run("start", "0123456789ab", check=False)
    assert bad.returncode != 0 and "not found" in bad.stderr, bad

    def complete(spans: list[SpanRecord]) -> bool:
        return bool(_rpc(spans, "PullImage", image_ref=image_id)
                    and _rpc(spans, "RunPodSandbox", pod_sandbox_id=sid)
                    and _rpc(spans, "CreateContainer", container_id=cid)
                    and _rpc(spans, "StartContainer", container_id=cid)
                    and _rpc(spans, "StartContainer", container_id="0123456789ab"))

    spans = collector.wait_for(complete)
    crictl.run("rmp", "-f", sid)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "pod-start-spans.json").write_text(json.dumps(
        [vars(s) for s in spans], indent=1, default=str))
    assert {s.resource.get("service.name") for s in spans} == {"tether-e2e"}

    # PullImage: the manifest, the config, each layer (fetched and unpacked), the names
    (pull,) = _rpc(spans, "PullImage", image_ref=image_id)
    assert pull.name == "runtime.v1.ImageService/PullImage" and pull.parent_id == ""
    assert pull.attributes["rpc.system"] == "grpc"
    assert pull.attributes["rpc.grpc.status_code"] == 0 and not pull.error
    assert pull.attributes["tether.image"] == BUSYBOX
    kids = _children(spans, pull)
    names = _names(kids)
    assert "image.manifest" in names and "image.config" in names, names
    layers = [k for k in kids if k.name == "image.layer"]
    assert layers, names
    for layer in layers:
        assert str(layer.attributes["tether.digest"]).startswith("sha256:")
        assert layer.attributes["tether.size"] > 0
        assert layer.attributes["tether.downloaded_bytes"] == layer.attributes["tether.size"]
    assert sorted(x.attributes["tether.index"] for x in layers) == list(range(len(layers)))
    manifest = next(k for k in kids if k.name == "image.manifest")
    assert manifest.attributes["tether.mirror"] is True  # the public name, through a mirror
    assert any(k.name == "store.write" and k.attributes["tether.record"] == "image"
               and k.attributes["tether.image_ref"] == image_id for k in kids), names

    # RunPodSandbox: prepare, the pause-holder, namespaces and CNI at once, settle, the store
    (runp,) = _rpc(spans, "RunPodSandbox", pod_sandbox_id=sid)
    assert runp.name == "runtime.v1.RuntimeService/RunPodSandbox"
    assert runp.attributes["tether.pod_name"] == "traced"
    assert runp.attributes["tether.runtime_handler"] == "runc"  # the default, none asked
    kids = _children(spans, runp)
    assert _names(kids) == ["cni.add", "sandbox.namespaces", "sandbox.pause_holder",
                            "sandbox.prepare", "sandbox.settle", "store.write", "store.write",
                            "store.write"], _names(kids)
    assert all(k.attributes["tether.pod_sandbox_id"] == sid for k in kids)
    cni = next(k for k in kids if k.name == "cni.add")
    assert cni.attributes["tether.network"] == "e2etrace0-net"
    assert str(cni.attributes["tether.ips"]).startswith("10.92.0.")
    holder = next(k for k in kids if k.name == "sandbox.pause_holder")
    assert holder.attributes["tether.pid"] > 1
    states = sorted(k.attributes["tether.state"] for k in kids if k.name == "store.write")
    assert states == ["creating", "creating", "ready"]

    # CreateContainer: the rootfs, the OCI spec, the store
    (create,) = _rpc(spans, "CreateContainer", container_id=cid)
    assert create.attributes["tether.pod_sandbox_id"] == sid
    assert create.attributes["tether.image"] == BUSYBOX
    assert create.attributes["tether.container_name"] == "c"
    assert create.attributes["tether.image_ref"] == image_id
    assert create.attributes["tether.runtime_handler"] == "runc"
    kids = _children(spans, create)
    assert _names(kids) == ["container.rootfs", "oci.spec", "store.write", "store.write"], \
        _names(kids)
    assert next(k for k in kids if k.name == "container.rootfs"
                ).attributes["tether.image_ref"] == image_id
    assert next(k for k in kids if k.name == "oci.spec"
                ).attributes["tether.runtime_handler"] == "runc"

    # StartContainer: `runc create` under conmon, `runc start`, the store
    (start,) = _rpc(spans, "StartContainer", container_id=cid)
    kids = _children(spans, start)
    assert _names(kids) == ["runtime.create", "runtime.start", "store.write"], _names(kids)
    rt_create = next(k for k in kids if k.name == "runtime.create")
    assert rt_create.attributes["tether.runtime_handler"] == "runc"
    assert rt_create.attributes["tether.pid"] > 1
    assert all(not k.error for k in kids)
    assert start.attributes["rpc.grpc.status_code"] == 0 and not start.error
    assert start.attributes["tether.pod_sandbox_id"] == sid
    assert start.attributes["tether.runtime_handler"] == "runc"

    # the failing RPC: NOT_FOUND, an error status with the message, no steps
    (failed,) = _rpc(spans, "StartContainer", container_id="0123456789ab")
    assert failed.error and failed.attributes["rpc.grpc.status_code"] == 5
    assert "NOT_FOUND" in failed.status_message and "not found" in failed.status_message
    assert _children(spans, failed) == []

    # every RPC is a trace of its own (crictl sends no traceparent)
    assert len({s.trace_id for s in (pull, runp, create, start, failed)}) == 5


def test_traceparent_from_the_caller_is_the_parent(traced: tuple[Crictl, Collector]) -> None:
    crictl, collector = traced
    trace_id, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    cri = crictl.node.daemon.client()
    try:
        cri.runtime.Version(pb.VersionRequest(), timeout=10,
                            metadata=[("traceparent", f"00-{trace_id}-{parent}-01")])
    finally:
        cri.close()
    spans = collector.wait_for(lambda ss: any(s.trace_id == trace_id for s in ss))
    (span,) = [s for s in spans if s.trace_id == trace_id]
    assert span.name == "runtime.v1.RuntimeService/Version"
    assert span.parent_id == parent and span.kind == SERVER


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _blocker(tmp: Path) -> dict[str, str]:
    d = tmp / "no-otel"
    d.mkdir(exist_ok=True)
    (d / "sitecustomize.py").write_text(BLOCKER)
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(d), os.environ.get("PYTHONPATH"))
                                          if p)}


def test_off_runs_pods_without_opentelemetry_and_on_refuses_without_it(
        critest_registry: RegistryServer, tmp_path: Path) -> None:
    binary = require_tool("crictl")
    env = _blocker(tmp_path)
    node = start_node(tmp_path / "off", critest_registry, bridge="e2enotrace0",
                      subnet="10.92.1.0/24", env=env)
    try:
        c = Crictl(binary, node, tmp_path / "crictl.yaml", tmp_path / "work")
        c.work.mkdir()
        c.config.write_text("")
        pod = c.pod_config("untraced")
        sid = c.out("runp", pod).strip()
        assert c.json("inspectp", sid)["status"]["state"] == "SANDBOX_READY"
        c.run("rmp", "-f", sid)
    finally:
        node.stop()
    conf = tmp_path / "on.toml"
    conf.write_text('[tracing]\nenabled = true\n')
    res = subprocess.run([sys.executable, "-m", "shim.cli", "config", "--config", str(conf),
                          "--config-dir", str(tmp_path / "none")],
                         capture_output=True, text=True, timeout=60, check=False,
                         env={**os.environ, **env})
    assert res.returncode == 2, res
    assert "key 'tracing.enabled'" in res.stderr and "tether[tracing]" in res.stderr, res.stderr
    assert str(conf) in res.stderr


def test_a_collector_that_is_down_costs_no_call(critest_registry: RegistryServer,
                                                tmp_path: Path) -> None:
    binary = require_tool("crictl")
    node = start_node(tmp_path / "down", critest_registry, bridge="e2edown0",
                      subnet="10.92.2.0/24", env=FAST_EXPORT,
                      extra={"tracing": {"enabled": True,
                                         "endpoint": f"127.0.0.1:{free_port()}"}})
    try:
        c = Crictl(binary, node, tmp_path / "crictl.yaml", tmp_path / "work")
        c.work.mkdir()
        c.config.write_text("")
        t = time.monotonic()
        sid = c.out("runp", c.pod_config("down")).strip()
        c.run("rmp", "-f", sid)
        assert time.monotonic() - t < 20
        time.sleep(1)  # a few export attempts fail meanwhile
    finally:
        t = time.monotonic()
        node.stop()
        stopped = time.monotonic() - t
    assert stopped < 15, f"stopping took {stopped:.1f}s with the collector down"
    lines = node.daemon.logs().splitlines()
    assert any('"stopped"' in line for line in lines)
    # the exporter's complaints are the daemon's own JSON lines, not plain text among them
    assert not [line for line in lines if "export" in line and not line.startswith("{")]
    failed = [json.loads(line) for line in lines
              if line.startswith("{") and '"logger": "tracing"' in line]
    assert failed and all("export" in x["event"] and x["level"] in ("warning", "error")
                          for x in failed), failed


def _idle_rss(node: Node, settle: float = 3.0) -> int:
    assert node.daemon.proc is not None
    time.sleep(settle)
    return _rss_kib(node.daemon.proc.pid)


def test_idle_rss_with_and_without_tracing(critest_registry: RegistryServer,
                                           tmp_path: Path) -> None:
    """The cost of tracing on an idle daemon (recorded in docs/tracing.md): two fresh
    daemons started alike, one with tracing off and the SDK unimportable, one exporting."""
    collector = Collector().start()
    results: dict[str, list[int]] = {"off": [], "on": []}
    try:
        for run in range(2):
            for mode in ("off", "on"):
                extra: dict[str, object] = {}
                env = _blocker(tmp_path)
                if mode == "on":
                    extra = {"tracing": {"enabled": True, "endpoint": collector.endpoint}}
                    env = dict(FAST_EXPORT)
                node = start_node(tmp_path / f"{mode}{run}", critest_registry,
                                  bridge=f"e2erss{mode}{run}", subnet=f"10.92.{10 + run}.0/24",
                                  extra=extra, env=env)
                try:
                    cri = node.daemon.client()
                    try:  # one RPC each: the on daemon has its exporter running
                        cri.runtime.Version(pb.VersionRequest(), timeout=10)
                    finally:
                        cri.close()
                    results[mode].append(_idle_rss(node))
                finally:
                    node.stop()
    finally:
        collector.stop()
    off, on = min(results["off"]), min(results["on"])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "idle-rss.json").write_text(json.dumps(
        {"rss_kib": results, "delta_kib": on - off}, indent=1))
    print(f"\nidle RSS: tracing off {off / 1024:.1f} MiB, on {on / 1024:.1f} MiB "
          f"(+{(on - off) / 1024:.1f} MiB); runs {results}")
    assert on > off  # the SDK is loaded only when on
