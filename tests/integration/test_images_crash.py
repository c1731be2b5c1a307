"""Pulls that stall and daemons that die mid-pull: cancelled in time, nothing half-visible,
leftovers cleaned at the next start, and the next pull works."""

from __future__ import annotations

import threading
import time

import grpc

from bench.procs import descendants, snapshot
from tests.integration.images_fixtures import *  # noqa: F403  (fixtures)
from tests.integration.images_fixtures import (
    RegistryProxy,
    StartDaemon,
    daemon_config,
)
from tests.rig.images import ImageRegistry


def _wait(pred: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_stalled_pull_is_cancelled(
    registry: ImageRegistry, registry_proxy: RegistryProxy, start_image_daemon: StartDaemon
) -> None:
    d = start_image_daemon(daemon_config(insecure=[registry_proxy.host], progress_timeout=2))
    registry_proxy.stall.set()
    ref = f"{registry_proxy.host}/web:latest"
    t0 = time.monotonic()
    err = d.pull_error(ref)
    elapsed = time.monotonic() - t0
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED, err.details()
    assert ref in err.details() and "no progress" in err.details()
    assert 2 <= elapsed < 15
    assert d.list() == []
    assert list((d.images_dir / "tmp").iterdir()) == []
    assert d.daemon.proc is not None
    pid = d.daemon.proc.pid  # the registry client runs in-process: no helper processes
    assert descendants(snapshot().procs.values(), [pid]) == {pid}
    assert d.metric("tether_image_pulls_total", outcome="deadlineexceeded") == 1


def test_restart_mid_pull(
    registry: ImageRegistry, registry_proxy: RegistryProxy, start_image_daemon: StartDaemon
) -> None:
    config = daemon_config(insecure=[registry_proxy.host, registry.host])
    d = start_image_daemon(config)
    registry_proxy.stall.set()
    ref = f"{registry_proxy.host}/web:latest"
    result: list[BaseException] = []

    def pull() -> None:
        try:
            d.pull(ref, timeout=60)
        except BaseException as e:
            result.append(e)

    t = threading.Thread(target=pull)
    t.start()
    _wait(lambda: registry_proxy.blob_requests())
    tmp = d.images_dir / "tmp"
    _wait(lambda: any(tmp.iterdir()))
    assert d.daemon.proc is not None
    # leftovers a crash could also leave: a half-unpacked snapshot, a stray blob temp file
    (d.snapshots_dir / ".tmp-0123456789abcdef-dead").mkdir()
    (d.snapshots_dir / ".tmp-0123456789abcdef-dead" / "fs").mkdir()
    (d.blobs_dir / "oci-put-blob123").write_bytes(b"partial")
    d.daemon.kill()
    t.join(30)
    assert result and isinstance(result[0], grpc.RpcError)
    assert any(tmp.iterdir())  # the dead daemon's partial blob is still there

    d2 = start_image_daemon(config, base=d.daemon.base)
    assert d2.list() == []
    assert list(tmp.iterdir()) == []
    assert {p.name for p in d2.snapshots_dir.iterdir()} == {"empty"}
    assert not (d2.blobs_dir / "oci-put-blob123").exists()
    # the next pull works (straight from the registry this time)
    image_id = d2.pull(registry.ref("web"))
    assert d2.status(image_id).image.id == image_id


def test_shutdown_mid_pull(
    registry: ImageRegistry, registry_proxy: RegistryProxy, start_image_daemon: StartDaemon
) -> None:
    d = start_image_daemon(daemon_config(insecure=[registry_proxy.host]))
    registry_proxy.stall.set()
    result: list[BaseException] = []

    def pull() -> None:
        try:
            d.pull(f"{registry_proxy.host}/web:latest", timeout=60)
        except BaseException as e:
            result.append(e)

    t = threading.Thread(target=pull)
    t.start()
    tmp = d.images_dir / "tmp"
    _wait(lambda: registry_proxy.blob_requests() and any(tmp.iterdir()))
    assert d.daemon.stop() == 0  # SIGTERM: in-flight pulls end within the grace period
    t.join(30)
    assert result and isinstance(result[0], grpc.RpcError)
    assert list(tmp.iterdir()) == []
