"""bench.compare pairing and ratios, and how the report shows them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import report
from bench.compare import interleave, metric_ratios, ratio_label, step_ratios
from bench.stats import Summary, summarize
from bench.workloads import WorkloadResult


def test_interleave_alternates_per_round() -> None:
    assert interleave(3, ["A", "B"]) == [
        (0, "A"), (0, "B"), (1, "A"), (1, "B"), (2, "A"), (2, "B"),
    ]
    assert interleave(2, ["A"]) == [(0, "A"), (1, "A")]
    assert interleave(0, ["A", "B"]) == []


def test_ratio_label() -> None:
    assert ratio_label("containerd", "tether") == "tether/containerd"


def _summ(ms: list[float]) -> Summary:
    s = summarize([x / 1000 for x in ms])
    assert s is not None
    return s


def test_step_ratios_b_over_a() -> None:
    a = {"RunPodSandbox": _summ([100, 100, 100]), "OnlyA": _summ([1])}
    b = {"RunPodSandbox": _summ([40, 50, 60]), "OnlyB": _summ([1])}
    r = step_ratios(a, b)
    assert set(r) == {"RunPodSandbox"}
    assert r["RunPodSandbox"]["p50"] == pytest.approx(0.5)
    assert r["RunPodSandbox"]["p95"] == pytest.approx(0.59)


def test_metric_ratios() -> None:
    assert metric_ratios({"m": 4.0, "x": 1.0}, {"m": 1.0}) == {"m": 0.25}


def _result(samples: dict[str, list[float]], **kw: object) -> WorkloadResult:
    r = WorkloadResult(samples={k: [x / 1000 for x in v] for k, v in samples.items()})
    r.rounds = 1
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def _run() -> report.RunData:
    run = report.RunData(
        started="2024-01-01T00:00:00+00:00",
        command=["tether", "bench"],
        config={},
        machine={"cpu_model": "x", "cpus": 2, "memory_mib": 1, "kernel": "k"},
        tools={},
        runtimes=[{"label": "containerd", "endpoint": "unix:///a", "version": {}},
                  {"label": "tether", "endpoint": "unix:///b", "version": {}}],
        workloads=["lifecycle", "floor"],
    )
    run.results = {
        "containerd": {"lifecycle": _result(
            {"RunPodSandbox": [80, 80, 80], "StartContainer": [50, 50],
             "CreateContainer+StartContainer": [60, 60]},
            metrics={"per_pod_overhead_kib": [3000.0]})},
        "tether": {"lifecycle": _result(
            {"RunPodSandbox": [40, 40, 40]},
            unsupported={"CreateContainer": "UNIMPLEMENTED: CreateContainer"},
            skipped={"StartContainer": "not reached: CreateContainer unsupported"},
            metrics={"per_pod_overhead_kib": [1500.0]})},
    }
    run.floor = _result({"sandbox start (holder+CNI ADD)": [20, 20], "runc start": [5],
                         "runc create+start": [15]})
    return run


def test_json_has_percentiles_ratios_and_floor_overhead() -> None:
    doc = report.build_json(_run())
    json.dumps(doc)  # serialisable
    steps = doc["results"]["containerd"]["lifecycle"]["steps"]
    assert set(steps["RunPodSandbox"]) >= {"p50_ms", "p95_ms", "p99_ms", "max_ms", "n"}
    assert steps["RunPodSandbox"]["p50_ms"] == 80.0
    t = doc["results"]["tether"]["lifecycle"]
    assert t["unsupported"] == {"CreateContainer": "UNIMPLEMENTED: CreateContainer"}
    assert "StartContainer" in t["skipped"]
    comp = doc["compare"]
    assert comp["ratio"] == "tether/containerd"
    assert comp["workloads"]["lifecycle"]["steps"]["RunPodSandbox"]["p50"] == 0.5
    assert "StartContainer" not in comp["workloads"]["lifecycle"]["steps"]
    assert comp["workloads"]["lifecycle"]["metrics"]["per_pod_overhead_kib"] == 0.5
    over = doc["overhead_above_floor"]["containerd"]["lifecycle"]
    assert over["RunPodSandbox"]["p50_over_floor_ms"] == 60.0
    assert over["CreateContainer+StartContainer"]["floor_step"] == "runc create+start"
    assert over["CreateContainer+StartContainer"]["p50_over_floor_ms"] == 45.0
    assert "StartContainer" not in over  # containerd does runc create in StartContainer


def test_render_marks_unsupported_and_ratios() -> None:
    text = report.render(_run(), {"lifecycle": "pods"})
    assert "tether/containerd" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("CreateContainer "))
    assert "unsupported" in line
    rps = next(ln for ln in text.splitlines() if ln.startswith("RunPodSandbox"))
    assert "0.50" in rps and "+60.0" in rps
    assert "floor" in text


def test_plot_without_matplotlib_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_mpl(name: str, *a: Any, **kw: Any) -> Any:
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_mpl)
    why = report.plot(_run(), str(tmp_path / "p.png"))
    assert why is not None and "matplotlib" in why
    assert not (tmp_path / "p.png").exists()
