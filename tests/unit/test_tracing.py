"""Tracing's pure parts: the [tracing] config and its checks, the no-op path (the SDK never
imported when off), the interceptor's span attributes, and the SDK backend's span tree with
an in-memory exporter (the real OTLP export is tests/e2e/test_tracing.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from shim import config as c
from shim import interceptor, tracing
from shim.cri import api_pb2 as pb

REPO = Path(__file__).resolve().parents[2]


def load(tmp_path: Path, text: str) -> c.Config:
    f = tmp_path / "tether.toml"
    f.write_text(text)
    return c.load(c.ConfigSources(file=str(f), file_required=True,
                                  dropin_dir=str(tmp_path / "d")))


# --- config ------------------------------------------------------------------------------


def test_tracing_is_off_by_default(tmp_path: Path) -> None:
    cfg = c.load(c.ConfigSources(file=str(tmp_path / "none.toml"),
                                 dropin_dir=str(tmp_path / "d")))
    t = cfg.tracing
    assert (t.enabled, t.endpoint, t.sampling_ratio, t.service_name) == (
        False, "127.0.0.1:4317", 1.0, "tether")
    assert "[tracing]" in cfg.to_toml()


def test_tracing_config_loads(tmp_path: Path) -> None:
    cfg = load(tmp_path, '[tracing]\nenabled = true\nendpoint = "https://otel.example:4317"\n'
                         'sampling_ratio = 0.25\nservice_name = "tether-node1"\n')
    assert cfg.tracing.enabled and cfg.tracing.sampling_ratio == 0.25
    assert cfg.tracing.service_name == "tether-node1"


@pytest.mark.parametrize(("text", "fragment"), [
    ('endpoint = "localhost"', "'tracing.endpoint'"),
    ('endpoint = "grpc://h:4317"', "scheme 'grpc'"),
    ('endpoint = "http://h:4317/v1/traces"', "no path"),
    ('endpoint = "h:99999"', "port '99999'"),
    ("sampling_ratio = 1.5", "'tracing.sampling_ratio': must be 0..1"),
    ("sampling_ratio = -0.1", "must be 0..1"),
    ('service_name = " "', "'tracing.service_name'"),
    ('enabled = "yes"', "'tracing.enabled': must be true or false"),
    ("exporter = 1", "unknown key 'tracing.exporter'"),
])
def test_bad_tracing_values_name_the_key_and_file(tmp_path: Path, text: str,
                                                  fragment: str) -> None:
    with pytest.raises(c.ConfigError) as e:
        load(tmp_path, f"[tracing]\n{text}\n")
    assert fragment in str(e.value)
    assert str(tmp_path / "tether.toml") in str(e.value)


def test_enabled_without_the_packages_fails_at_load(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "REQUIRED_MODULES", ("opentelemetry_not_installed.sdk",))
    with pytest.raises(c.ConfigError) as e:
        load(tmp_path, "[tracing]\nenabled = true\n")
    msg = str(e.value)
    assert "'tracing.enabled'" in msg and "opentelemetry_not_installed" in msg
    assert "tether[tracing]" in msg
    # off, the same missing packages are no problem
    assert not load(tmp_path, "[tracing]\nenabled = false\n").tracing.enabled


@pytest.mark.parametrize(("endpoint", "target", "insecure"), [
    ("127.0.0.1:4317", "127.0.0.1:4317", True),
    ("collector.monitoring:4317", "collector.monitoring:4317", True),
    ("[::1]:4317", "[::1]:4317", True),
    ("http://10.0.0.5:4317", "10.0.0.5:4317", True),
    ("https://otel.example:443/", "otel.example:443", False),
])
def test_parse_endpoint(endpoint: str, target: str, insecure: bool) -> None:
    assert tracing.parse_endpoint(endpoint) == tracing.Endpoint(target, insecure)


@pytest.mark.parametrize("endpoint", ["", ":4317", "host", "host:", "host:0", "a b:1",
                                      "user@h:1", "ftp://h:1", "http://h"])
def test_parse_endpoint_refuses(endpoint: str) -> None:
    with pytest.raises(ValueError):
        tracing.parse_endpoint(endpoint)


# --- off ---------------------------------------------------------------------------------


def test_off_is_one_shared_noop() -> None:
    assert not tracing.enabled()
    tracing.annotate(a=1)
    with tracing.span("x", pod_sandbox_id="p") as sp:
        sp.set(a=1)
        assert not sp.recording
    assert tracing.span("y") is tracing.NOOP
    rpc = tracing.rpc_span("/runtime.v1.RuntimeService/Version", (), {})
    assert rpc is tracing.NOOP and rpc.trace_id == ""
    rpc.end(grpc.StatusCode.OK, "")


def test_off_never_imports_opentelemetry() -> None:
    """The daemon's modules, config loading and the span calls, in a fresh interpreter."""
    code = (
        "import sys\n"
        "import shim.cli, shim.daemon, shim.interceptor\n"
        "from shim import config, tracing\n"
        "src = config.ConfigSources(file='/nonexistent.toml', dropin_dir='/nonexistent')\n"
        "cfg = config.load(src)\n"
        "tracing.configure(cfg.tracing)\n"
        "with tracing.span('cni.add', pod_sandbox_id='x'): pass\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'opentelemetry')\n"
        "assert not bad, bad\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=False, timeout=60)
    assert res.returncode == 0, res.stderr


# --- the interceptor's attributes ----------------------------------------------------------


def test_span_attributes_of_requests_and_responses() -> None:
    req = pb.RunPodSandboxRequest(runtime_handler="crun")
    req.config.metadata.name = "web"
    attrs = interceptor.span_attributes(req, interceptor._ids(req))
    assert attrs == {"pod_name": "web", "runtime_handler": "crun"}
    req2 = pb.CreateContainerRequest(pod_sandbox_id="p1")
    req2.config.image.image = "busybox"
    req2.config.metadata.name = "app"
    assert interceptor.span_attributes(req2, interceptor._ids(req2)) == {
        "pod_sandbox_id": "p1", "image": "busybox", "container_name": "app"}
    req3 = pb.PullImageRequest()
    req3.image.image = "busybox:1"
    assert interceptor.span_attributes(req3, interceptor._ids(req3)) == {"image": "busybox:1"}
    assert interceptor.response_attributes(pb.RunPodSandboxResponse(pod_sandbox_id="p2")) == {
        "pod_sandbox_id": "p2"}
    assert interceptor.response_attributes(pb.PullImageResponse(image_ref="sha256:ab")) == {
        "image_ref": "sha256:ab"}
    assert interceptor.response_attributes(pb.VersionResponse(runtime_name="tether")) == {}
    bad = interceptor.Undecodable(ValueError("x"))
    assert interceptor.span_attributes(bad, interceptor._ids(bad)) == {}


# --- the SDK backend, exported in memory ------------------------------------------------------

otel_sdk = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")


@pytest.fixture
def memory(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    from shim import otel

    exporter = otel_sdk.InMemorySpanExporter()
    backend = otel.Backend("tether-unit", tracing.Endpoint("127.0.0.1:1", True), 1.0,
                           exporter=exporter)
    monkeypatch.setattr(tracing, "_backend", backend)
    yield exporter
    backend.provider.force_flush()


def _finished(exporter: object) -> list[object]:
    tracing._backend.provider.force_flush()  # type: ignore[union-attr]
    return list(exporter.get_finished_spans())  # type: ignore[attr-defined]


def test_rpc_span_with_children_and_error(memory: object) -> None:
    from opentelemetry.trace import SpanKind, StatusCode

    async def handler() -> None:
        rpc = tracing.rpc_span("/runtime.v1.RuntimeService/RunPodSandbox", (),
                               {"pod_name": "web"})
        assert rpc.recording and len(rpc.trace_id) == 32
        tracing.annotate(runtime_handler="runc")  # on the RPC's span, the current one
        with tracing.span("cni.add", pod_sandbox_id="p1") as sp:
            sp.set(network="n", skipped=None)
        # a task made inside takes the current span as its parent (as the steps run at once)
        async def step() -> None:
            with tracing.span("sandbox.namespaces"):
                await asyncio.sleep(0)
        await asyncio.gather(step())
        with pytest.raises(RuntimeError), tracing.span("sandbox.settle"):
            raise RuntimeError("holder died")
        rpc.set(pod_sandbox_id="p1")
        rpc.end(grpc.StatusCode.NOT_FOUND, "pod sandbox 'x' not found")

    asyncio.run(handler())
    spans = {s.name: s for s in _finished(memory)}  # type: ignore[attr-defined]
    root = spans["runtime.v1.RuntimeService/RunPodSandbox"]
    assert root.parent is None and root.kind is SpanKind.SERVER
    assert root.attributes["rpc.system"] == "grpc"
    assert root.attributes["rpc.method"] == "RunPodSandbox"
    assert root.attributes["rpc.service"] == "runtime.v1.RuntimeService"
    assert root.attributes["rpc.grpc.status_code"] == 5
    assert root.attributes["tether.pod_name"] == "web"
    assert root.attributes["tether.pod_sandbox_id"] == "p1"
    assert root.attributes["tether.runtime_handler"] == "runc"
    assert root.status.status_code is StatusCode.ERROR
    assert "NOT_FOUND" in root.status.description
    assert root.resource.attributes["service.name"] == "tether-unit"
    for name in ("cni.add", "sandbox.namespaces", "sandbox.settle"):
        assert spans[name].parent.span_id == root.context.span_id, name
        assert spans[name].context.trace_id == root.context.trace_id
    assert dict(spans["cni.add"].attributes) == {"tether.pod_sandbox_id": "p1",
                                                 "tether.network": "n"}
    assert spans["sandbox.settle"].status.status_code is StatusCode.ERROR
    assert spans["sandbox.settle"].events[0].name == "exception"
    assert spans["cni.add"].status.status_code is StatusCode.UNSET


def test_rpc_span_continues_the_callers_trace(memory: object) -> None:
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    rpc = tracing.rpc_span("/runtime.v1.RuntimeService/Version",
                           [("traceparent", f"00-{trace_id}-{parent}-01")], {})
    assert rpc.trace_id == trace_id
    rpc.end(grpc.StatusCode.OK, "")
    (span,) = _finished(memory)
    assert f"{span.context.trace_id:032x}" == trace_id  # type: ignore[attr-defined]
    assert f"{span.parent.span_id:016x}" == parent  # type: ignore[attr-defined]
    assert span.attributes["rpc.grpc.status_code"] == 0  # type: ignore[attr-defined]


def test_sampling_ratio_zero_records_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from shim import otel

    exporter = otel_sdk.InMemorySpanExporter()
    backend = otel.Backend("t", tracing.Endpoint("127.0.0.1:1", True), 0.0, exporter=exporter)
    monkeypatch.setattr(tracing, "_backend", backend)
    rpc = tracing.rpc_span("/runtime.v1.RuntimeService/ListContainers", (), {})
    with tracing.span("store.write") as sp:
        assert not sp.recording
    assert not rpc.recording and rpc.trace_id == ""
    rpc.end(grpc.StatusCode.OK, "")
    backend.shutdown()
    assert exporter.get_finished_spans() == ()
