"""A real Prometheus (Debian's) scrapes a real Tether in the test network namespace, and its
HTTP API answers for Tether's operation counters, latency histogram and image-pull metrics,
and for the shipped recording rules (contrib/prometheus/tether-rules.yml)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from shim.cri import api_pb2 as pb
from tests.integration.images_fixtures import daemon_config
from tests.rig.daemon import TetherDaemon, free_port
from tests.rig.images import ImageRegistry
from tests.rig.netns import assert_private_netns

RULES = Path(__file__).resolve().parents[2] / "contrib" / "prometheus" / "tether-rules.yml"


@pytest.fixture
def prometheus(tmp_path: Path, registry: ImageRegistry) -> Iterator[tuple[TetherDaemon, str]]:
    if shutil.which("prometheus") is None:
        pytest.fail("prometheus not installed (Debian package prometheus; "
                    "scripts/install-deps.sh)", pytrace=False)
    assert_private_netns()
    d = TetherDaemon(tmp_path / "t",
                     config_text=daemon_config(insecure=[registry.host])).start()
    port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(json.dumps({  # YAML is a superset of JSON
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "tether", "static_configs": [
            {"targets": [f"127.0.0.1:{d.metrics_port}"]}]}],
    }))
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    try:
        yield d, f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        d.stop()


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def _eventually(base: str, expr: str, timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = _query(base, expr)
            if result:
                return result
        except OSError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            raise AssertionError(f"Prometheus has nothing for {expr!r} after {timeout}s")
        time.sleep(0.5)


def test_prometheus_scrapes_tether(prometheus: tuple[TetherDaemon, str],
                                   registry: ImageRegistry) -> None:
    d, base = prometheus
    c = d.client()
    try:
        c.images.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=registry.ref("busybox"))),
                           timeout=120)
        c.runtime.Version(pb.VersionRequest())
        c.runtime.ListPodSandbox(pb.ListPodSandboxRequest())
        with pytest.raises(grpc.RpcError):
            c.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id="nope"))
    finally:
        c.close()
    up = _eventually(base, 'up{job="tether"} == 1')
    assert up[0]["metric"]["instance"] == f"127.0.0.1:{d.metrics_port}"
    ops = _eventually(base, 'tether_operations_total{operation="Version"}')
    assert float(ops[0]["value"][1]) >= 1
    errs = _eventually(base, 'tether_operations_errors_total{operation="PodSandboxStatus"}')
    assert errs[0]["metric"]["code"] == "NOT_FOUND"
    buckets = _eventually(base, 'tether_operations_latency_seconds_bucket{operation="Version"}')
    assert len(buckets) > 5  # the histogram's le buckets
    _eventually(base, "tether_image_pull_duration_seconds_count > 0")
    pulls = _eventually(base, 'tether_image_pulls_total{outcome="success"}')
    assert float(pulls[0]["value"][1]) == 1
    _eventually(base, "tether_image_pull_bytes_total > 0")
    # the shipped recording rules evaluate against it
    _eventually(base, 'tether:operations:rate5m{operation="Version"}')
    _eventually(base, "tether:operation_latency_seconds:p99_5m")
