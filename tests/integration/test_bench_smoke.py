"""Smoke run of the benchmark tool (``python -m bench``) against a real Tether daemon.

Tiny sizes: the point is that the tool runs end to end through the CRI, reports what
Tether does not implement yet as *unsupported* (not as a crash or an error), and writes a
valid JSON report. Steps Tether implements must run without errors, so this test gets
stronger as Tether grows. The floor (runc, catatonit, CNI plugins called directly) runs for
real inside the test's network namespace.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.cli import main
from tests.rig.daemon import TetherDaemon
from tests.rig.images import ImageRegistry

LIFECYCLE = ("RunPodSandbox", "CreateContainer", "StartContainer", "StopContainer",
             "RemoveContainer", "StopPodSandbox", "RemovePodSandbox")


@pytest.fixture
def daemon(tmp_path: Path, registry: ImageRegistry) -> Iterator[TetherDaemon]:
    config = f'[images]\ninsecure_registries = ["{registry.host}"]\n'
    d = TetherDaemon(tmp_path / "t", config_text=config)
    # the daemon and the floor use the same CNI config, as in scripts/bench.sh
    _conflist(d.cni_conf_dir, tmp_path / "ipam")
    d.start()
    yield d
    d.stop()


def _conflist(conf_dir: Path, ipam_dir: Path) -> Path:
    conf_dir.mkdir(parents=True, exist_ok=True)
    f = conf_dir / "10-bench.conflist"
    f.write_text(json.dumps({
        "cniVersion": "1.0.0",
        "name": "bench-smoke",
        "plugins": [
            {"type": "bridge", "bridge": "bsmoke0", "isGateway": True, "ipMasq": False,
             "ipam": {"type": "host-local", "dataDir": str(ipam_dir),
                      "ranges": [[{"subnet": "10.207.0.0/24"}]]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "loopback"},
        ],
    }))
    return f


def _accounted(wl: dict[str, Any], step: str) -> str:
    """measured | unsupported | skipped (else the step vanished: a bug in the tool)."""
    if step in wl["steps"]:
        assert wl["steps"][step]["n"] >= 1
        for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms"):
            assert wl["steps"][step][k] >= 0
        return "measured"
    if step in wl["unsupported"]:
        assert wl["unsupported"][step]
        return "unsupported"
    assert step in wl["skipped"] or "*" in wl["skipped"], f"{step} missing from the report"
    return "skipped"


def test_bench_smoke(
    tmp_path: Path, daemon: TetherDaemon, registry: ImageRegistry,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "bench.json"
    rc = main([
        "--endpoint", f"unix://{daemon.socket}",
        "-w", "basic,lifecycle,density,image,floor",
        "-n", "1", "-m", "1", "--warmup", "0", "--settle", "0",
        "--basic-iterations", "3", "--list-iterations", "2", "--image-rounds", "1",
        "--floor-rounds", "1",
        "--image", registry.ref("busybox"), "--pull-image", registry.ref("layers"),
        "--cni-conf", str(daemon.cni_conf_dir / "10-bench.conflist"),
        "--log-dir", str(tmp_path / "logs"),
        "--json", str(out), "--no-progress",
    ])
    text = capsys.readouterr().out
    doc = json.loads(out.read_text())
    errors = {wl: r["errors"] for wl, r in doc["results"]["tether"].items() if r["errors"]}
    assert rc == 0, f"bench exit {rc}; errors: {errors}\n{text}\n{daemon.logs()[-3000:]}"
    assert not errors

    assert doc["schema"] == 1
    assert doc["runtimes"][0]["version"]["runtime_name"] == "tether"
    assert doc["machine"]["cpus"] >= 1 and doc["machine"]["kernel"]
    assert "runc" in doc["tools"] and "containerd" in doc["tools"]
    tether = doc["results"]["tether"]
    # what today's Tether answers
    assert tether["basic"]["steps"]["Version"]["n"] == 3
    assert tether["basic"]["steps"]["Status"]["n"] == 3
    for step in LIFECYCLE:
        _accounted(tether["lifecycle"], step)
    for step in ("ListPodSandbox", "ListContainers", "ListContainerStats"):
        if "per_pod_overhead_kib" in tether["density"]["metrics"]:
            _accounted(tether["density"], step)
    _accounted(tether["image"], "PullImage")
    # the report on the terminal says so too
    assert "== lifecycle" in text
    if tether["lifecycle"]["unsupported"]:
        assert "unsupported" in text

    # the floor ran for real
    fl = doc["floor"]
    assert not fl["errors"], fl["errors"]
    for step in ("pause holder spawn", "CNI ADD", "runc create", "runc start",
                 "runc kill+wait", "runc delete", "CNI DEL", "pause holder stop"):
        assert fl["steps"][step]["n"] == 1, step


def test_bench_compare_pairs_two_endpoints(
    tmp_path: Path, daemon: TetherDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cmp.json"
    ep = f"unix://{daemon.socket}"
    rc = main(["--compare", ep, ep, "--names", "one", "two", "-w", "basic",
               "--basic-iterations", "4", "--json", str(out), "--no-progress"])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert [r["label"] for r in doc["runtimes"]] == ["one", "two"]
    assert doc["compare"]["ratio"] == "two/one"
    assert doc["compare"]["workloads"]["basic"]["steps"]["Version"]["p50"] > 0
    assert "two/one" in capsys.readouterr().out
