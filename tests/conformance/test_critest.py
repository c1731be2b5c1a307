"""critest, the CRI validation suite every runtime is judged by, against Tether with runc and
with crun. Nothing may fail or skip itself unless tests/conformance/pending.txt lists it with
the issue that owns it; a listed spec that passes fails too (the list cannot go stale).
Skipped on purpose (--ginkgo.skip) only what this host cannot run; see docs/conformance.md.
The JSON and JUnit reports are kept under $TETHER_ARTIFACTS (default <repo>/artifacts)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.rig.critest import REPO_ROOT, judge, load_pending, load_report, require_tool
from tests.rig.node import start_node
from tests.rig.registry import RegistryServer

HANDLERS = ["runc", "crun"]
# the Streaming specs once more with exec, attach and port-forward over WebSocket (critest's
# -websocket-exec/-attach/-portforward)
RUNS = [*HANDLERS, "runc-websocket"]
WEBSOCKET_FOCUS = r"Streaming"

# What this host cannot run, with the reason (docs/conformance.md repeats them).
HOST_SKIPS = {
    r"\[k8s\.io\] AppArmor": "the kernel has no AppArmor (/sys/module/apparmor absent)",
    r"public image with digest should be pulled and removed":
        "pulls gcr.io/k8s-staging-cri-tools/test-image-digest@sha256:9700f9a2...: a fixed "
        "digest cannot be rebuilt offline, and this machine has no internet",
}
# Specs that skip themselves for a reason that is not Tether's to fix here.
EXPECTED_SELF_SKIPS = [
    r"NRI",  # critest runs its NRI specs only with -nri-socket; Tether has no NRI (no issue asks)
]


def artifacts_dir() -> Path:
    d = Path(os.environ.get("TETHER_ARTIFACTS") or REPO_ROOT / "artifacts") / "conformance"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _host_skips() -> dict[str, str]:
    skips = dict(HOST_SKIPS)
    if Path("/sys/module/apparmor/parameters/enabled").exists():
        skips.pop(r"\[k8s\.io\] AppArmor")
    return skips


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("run", RUNS)
def test_critest(run: str, critest_registry: RegistryServer, tmp_path: Path) -> None:
    critest = require_tool("critest")
    handler, _, transport = run.partition("-")
    subnet = f"10.90.{RUNS.index(run)}.0/24"
    node = start_node(tmp_path, critest_registry, bridge=f"ct{RUNS.index(run)}x0",
                      subnet=subnet)
    out = artifacts_dir()
    report, junit = out / f"critest-{run}.json", out / f"critest-{run}.xml"
    log = out / f"critest-{run}.log"
    report.unlink(missing_ok=True)
    work = tmp_path / "work"
    work.mkdir()
    focus = os.environ.get("TETHER_CRITEST_FOCUS", "") or (
        WEBSOCKET_FOCUS if transport == "websocket" else "")
    cmd = [critest, "--runtime-endpoint", node.endpoint, "--image-endpoint", node.endpoint,
           "--runtime-handler", handler, f"--ginkgo.junit-report={junit}",
           f"--ginkgo.json-report={report}", "--ginkgo.no-color", "--ginkgo.timeout=25m",
           "--ginkgo.skip=" + "|".join(_host_skips())]
    if focus:
        cmd.append(f"--ginkgo.focus={focus}")
    if transport == "websocket":
        cmd += ["-websocket-exec", "-websocket-attach", "-websocket-portforward"]
    try:
        with open(log, "wb") as f:
            # critest's temp files (seccomp profiles, log dirs) go to TMPDIR
            subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=work, timeout=1700,
                           env={**os.environ, "TMPDIR": str(work)}, check=False)
    finally:
        node.stop()
    assert report.exists(), f"critest wrote no report; see {log}:\n{log.read_text()[-3000:]}"
    pending = load_pending()
    if focus:  # a focused run judges only what it ran
        ran = {r.name for r in load_report(report) if r.state != "skipped" or r.by_spec}
        pending = {k: v for k, v in pending.items() if k in ran}
    verdict = judge(load_report(report), pending, EXPECTED_SELF_SKIPS)
    (out / f"critest-{run}.summary").write_text(verdict.explain() + "\n")
    print(f"[{run}] {verdict.summary()}")
    assert verdict.ok, f"[{run}] {verdict.explain()}\n(log {log})"
