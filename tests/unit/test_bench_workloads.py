"""Workloads against a fake CRI client: unsupported steps, cleanup, templates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import pytest

from bench import floor, templates
from bench.cri import CriError, Unsupported, _pid_from_info, normalize_endpoint
from bench.templates import BenchConfig
from bench.workloads import Basic, Lifecycle, Target, WorkloadResult
from shim.cri import api_pb2 as pb


class FakeClient:
    """Implements ``call`` like bench.cri.CriClient; RPCs in ``missing`` are UNIMPLEMENTED."""

    def __init__(self, missing: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.missing = set(missing)
        self.calls: list[str] = []
        self.pods: set[str] = set()
        self.n = 0

    def call(self, method: str, request: Any, timeout: float | None = None) -> tuple[Any, float]:
        self.calls.append(method)
        if method in self.missing:
            raise Unsupported(method, grpc.StatusCode.UNIMPLEMENTED, f"{method} not built")
        self.n += 1
        if method == "RunPodSandbox":
            self.pods.add(f"sb{self.n}")
            return pb.RunPodSandboxResponse(pod_sandbox_id=f"sb{self.n}"), 0.01
        if method == "RemovePodSandbox":
            self.pods.discard(request.pod_sandbox_id)
            return pb.RemovePodSandboxResponse(), 0.002
        if method == "CreateContainer":
            return pb.CreateContainerResponse(container_id=f"c{self.n}"), 0.003
        if method == "ImageStatus":
            return pb.ImageStatusResponse(image=pb.Image(id="sha256:x")), 0.001
        if method == "ListContainers":
            return pb.ListContainersResponse(), 0.001
        return None, 0.001

    def image_present(self, ref: str) -> bool:
        return True

    def ensure_image(self, ref: str, sandbox: object = None) -> float:
        return 0.0


def _target(client: FakeClient) -> Target:
    return Target(label="fake", endpoint="unix:///x", client=client)  # type: ignore[arg-type]


def _cfg(tmp_path: Path) -> BenchConfig:
    return BenchConfig(run_id="t1", log_root=str(tmp_path / "logs"), basic_iterations=3)


def test_lifecycle_all_steps(tmp_path: Path) -> None:
    c = FakeClient()
    wl = Lifecycle(_cfg(tmp_path))
    res = wl.run_round(_target(c), 0, lambda: None)
    for step in ("RunPodSandbox", "CreateContainer", "StartContainer", "StopContainer",
                 "RemoveContainer", "StopPodSandbox", "RemovePodSandbox", "pod total",
                 "StopContainer+RemoveContainer",
                 "CreateContainer+StartContainer"):
        assert len(res.samples[step]) == 1, step
    assert res.samples["CreateContainer+StartContainer"][0] == pytest.approx(0.004)
    assert not res.unsupported and not res.errors
    assert c.pods == set()
    assert not any((tmp_path / "logs").iterdir())  # pod log dirs removed


def test_lifecycle_unsupported_sandbox_abandons(tmp_path: Path) -> None:
    c = FakeClient(missing={"RunPodSandbox"})
    res = Lifecycle(_cfg(tmp_path)).run_round(_target(c), 0, lambda: None)
    assert "RunPodSandbox" in res.unsupported
    assert "UNIMPLEMENTED" in res.unsupported["RunPodSandbox"]
    assert "CreateContainer" in res.skipped
    assert res.abandon
    assert not res.samples


def test_lifecycle_unsupported_container_cleans_up_pod(tmp_path: Path) -> None:
    c = FakeClient(missing={"CreateContainer"})
    res = Lifecycle(_cfg(tmp_path)).run_round(_target(c), 0, lambda: None)
    assert res.samples["RunPodSandbox"]
    assert "CreateContainer" in res.unsupported
    assert "StartContainer" in res.skipped
    assert "pod total" not in res.samples
    assert not res.abandon
    assert c.pods == set()  # the sandbox was stopped and removed


def test_basic_marks_unsupported_rpcs(tmp_path: Path) -> None:
    c = FakeClient(missing={"RuntimeConfig", "ImageFsInfo"})
    res = Basic(_cfg(tmp_path)).run_round(_target(c), 0, lambda: None)
    assert len(res.samples["Version"]) == 3
    assert len(res.samples["Status"]) == 3
    assert set(res.unsupported) == {"RuntimeConfig", "ImageFsInfo"}


def test_merge() -> None:
    a = WorkloadResult(samples={"x": [1.0]}, rounds=1)
    b = WorkloadResult(samples={"x": [2.0], "y": [3.0]}, unsupported={"z": "no"}, rounds=1,
                       metrics={"m": [1.0]})
    a.merge(b)
    assert a.samples == {"x": [1.0, 2.0], "y": [3.0]}
    assert a.unsupported == {"z": "no"}
    assert a.rounds == 2
    assert a.metrics == {"m": [1.0]}


def test_templates_substitute_and_parse() -> None:
    values = {"name": "p1", "uid": "u1", "index": "0", "run_id": "r", "log_dir": "/l",
              "image": "reg/busybox:latest"}
    sb = templates.pod_config(templates.DEFAULT_POD, values)
    assert sb.metadata.name == "p1" and sb.metadata.uid == "u1"
    assert sb.linux.cgroup_parent == "/tether-bench/podu1"
    assert sb.labels[templates.BENCH_LABEL] == "r"
    assert sb.linux.security_context.namespace_options.network == pb.NamespaceMode.POD
    cc = templates.container_config(templates.DEFAULT_CONTAINER, values)
    assert cc.image.image == "reg/busybox:latest"
    assert list(cc.command) == ["sleep", "3600"]


def test_template_file_in_crictl_camel_case(tmp_path: Path) -> None:
    f = tmp_path / "pod.json"
    f.write_text(json.dumps({"metadata": {"name": "{name}", "namespace": "x", "uid": "{uid}"},
                             "logDirectory": "{log_dir}"}))
    t = templates.load_template(str(f), templates.DEFAULT_POD)
    sb = templates.pod_config(t, {"name": "n", "uid": "u", "log_dir": "/d"})
    assert sb.log_directory == "/d"


def test_pid_from_verbose_info() -> None:
    assert _pid_from_info({"info": json.dumps({"pid": 1234, "sandboxID": "x"})}) == 1234
    assert _pid_from_info({"pid": "99"}) == 99
    assert _pid_from_info({"info": "not json"}) is None
    assert _pid_from_info({}) is None


def test_normalize_endpoint() -> None:
    assert normalize_endpoint("/run/a.sock") == "unix:///run/a.sock"
    assert normalize_endpoint("unix:///run/a.sock") == "unix:///run/a.sock"
    assert normalize_endpoint("unix:/run/a.sock") == "unix:///run/a.sock"
    with pytest.raises(ValueError):
        normalize_endpoint("tcp://1.2.3.4:1")


def test_cri_error_text() -> None:
    e = CriError("RunPodSandbox", grpc.StatusCode.INTERNAL, "boom")
    assert str(e) == "RunPodSandbox: INTERNAL: boom"


def test_cni_plugin_conf_chains_prev_result() -> None:
    conflist = {"cniVersion": "1.0.0", "name": "net", "plugins": [{"type": "bridge"}]}
    conf = floor.cni_plugin_conf(conflist, {"type": "portmap"}, {"ips": []})
    assert conf == {"type": "portmap", "name": "net", "cniVersion": "1.0.0",
                    "prevResult": {"ips": []}}
    assert "prevResult" not in floor.cni_plugin_conf(conflist, {"type": "bridge"}, None)


def test_load_single_plugin_conf(tmp_path: Path) -> None:
    f = tmp_path / "10.conf"
    f.write_text(json.dumps({"cniVersion": "0.4.0", "name": "n", "type": "bridge"}))
    cl = floor.load_conflist(str(f))
    assert cl["name"] == "n" and cl["plugins"][0]["type"] == "bridge"


def test_streaming_workload_is_listed_and_reads_crictls_forward_line() -> None:
    from bench.catalog import WORKLOADS
    from bench.cli import ALL_WORKLOADS
    from bench.streaming import FORWARDING

    assert "streaming" in WORKLOADS and "streaming" in ALL_WORKLOADS
    m = FORWARDING.search("Forwarding from 127.0.0.1:41234 -> 8080\n")
    assert m is not None and m.group(1) == "41234"
    assert FORWARDING.search("Forwarding from [::1]:41234 -> 8080") is None
