"""List/Status/Remove/FsInfo semantics, layer sharing, single-flight pulls, hot-path speed."""

from __future__ import annotations

import statistics
import subprocess
import threading
import time
from pathlib import Path

import grpc

from shim.containers.types import CState
from shim.cri import api_pb2 as pb
from shim.store import ContainerRecord, ImageRecord, Store
from tests.integration.images_fixtures import *  # noqa: F403  (fixtures)
from tests.integration.images_fixtures import (
    ImageDaemon,
    RegistryProxy,
    StartDaemon,
    daemon_config,
    rootfs_of,
)
from tests.rig.images import ImageRegistry


def _snapshots(d: ImageDaemon) -> set[str]:
    return {p.name for p in d.snapshots_dir.iterdir()} - {"empty"}


def _blobs(d: ImageDaemon) -> set[str]:
    return {p.name for p in d.blobs_dir.iterdir()}


def test_untag_then_remove_frees_layers(
    registry: ImageRegistry, extra_images: dict[str, str], image_daemon: ImageDaemon
) -> None:
    d = image_daemon
    a, b = registry.ref("busybox"), extra_images["bb-other"]
    image_id = d.pull(a)
    assert d.pull(b) == image_id
    assert sorted(d.status(image_id).image.repo_tags) == sorted([a, b])
    web = d.pull(registry.ref("web"))  # shares busybox's layer
    shared = _snapshots(d)
    assert len(shared) == 2
    d.remove(a)  # one of two tags: untag only
    assert list(d.status(image_id).image.repo_tags) == [b]
    assert d.status(a).image.id == ""
    d.remove(b)  # the last tag: the image goes; its layer stays for web
    assert d.status(image_id).image.id == ""
    assert _snapshots(d) == shared
    d.remove(web)
    assert _snapshots(d) == set()
    assert _blobs(d) == set()
    d.remove(web)  # absent: fine
    d.remove(f"{registry.host}/never-pulled:1")
    assert d.list() == []


def test_remove_by_digest_and_in_use(
    registry: ImageRegistry, image_daemon: ImageDaemon, start_image_daemon: StartDaemon
) -> None:
    d = image_daemon
    image_id = d.pull(registry.ref("busybox"))
    d.stop()
    store = Store(str(d.daemon.root / "tether.db"))
    store.write_sync([(store.containers, ContainerRecord(
        id="c0ffee", name="app", image=registry.ref("busybox"), image_ref=image_id,
        state=CState.CREATED), False)])
    store.close()
    d = start_image_daemon(daemon_config(insecure=[registry.host]), base=d.daemon.base)
    err = None
    try:
        d.remove(registry.digest_ref("busybox"))
    except grpc.RpcError as e:
        err = e
    assert err is not None and err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "c0ffee" in err.details() and "app" in err.details()
    assert d.status(image_id).image.id == image_id
    d.stop()
    store = Store(str(d.daemon.root / "tether.db"))
    rec = store.containers.get("c0ffee")
    assert rec is not None
    store.write_sync([(store.containers, rec, True)])
    store.close()
    d = start_image_daemon(daemon_config(insecure=[registry.host]), base=d.daemon.base)
    d.remove(registry.digest_ref("busybox"))
    assert d.list() == []


def test_pinned_pause_image(registry: ImageRegistry, start_image_daemon: StartDaemon) -> None:
    d = start_image_daemon(daemon_config(insecure=[registry.host],
                                         pause_image=registry.ref("busybox")))
    pause = d.pull(registry.ref("busybox"))
    web = d.pull(registry.ref("web"))
    pinned = {i.id: i.pinned for i in d.list()}
    assert pinned == {pause: True, web: False}


def test_list_filter_and_stream(registry: ImageRegistry, image_daemon: ImageDaemon) -> None:
    d = image_daemon
    ids = {d.pull(registry.ref(n)) for n in ("busybox", "web", "user")}
    assert {i.id for i in d.list()} == ids
    only = d.list(registry.ref("web"))
    assert [i.repo_tags[0] for i in only] == [registry.ref("web")]
    assert d.list(f"{registry.host}/nope:1") == []
    streamed = [i.id for r in d.client.images.StreamImages(pb.StreamImagesRequest(), timeout=10)
                for i in r.images]
    assert set(streamed) == ids


def _du(path: Path, *flags: str) -> int:
    out = subprocess.run(["du", "-s", "-x", *flags, str(path)], capture_output=True, text=True,
                         check=True).stdout
    return int(out.split()[0])


def test_fs_info_matches_du(registry: ImageRegistry, image_daemon: ImageDaemon) -> None:
    d = image_daemon
    d.pull(registry.ref("web"))
    d.pull(registry.ref("layers"))
    info = d.fs_info()
    (img,) = info.image_filesystems
    (ctr,) = info.container_filesystems
    assert img.fs_id.mountpoint == str(d.images_dir)
    assert img.used_bytes.value == _du(d.images_dir, "-B1")
    assert img.inodes_used.value == _du(d.images_dir, "--inodes")
    assert abs(img.timestamp - time.time_ns()) < 60e9
    assert ctr.fs_id.mountpoint == str(d.daemon.root / "containers")
    # no container yet: the (searchable, not listable) dir itself
    assert ctr.used_bytes.value == _du(d.daemon.root / "containers", "-B1")
    assert ctr.inodes_used.value == 1


def test_layers_present_are_not_fetched(
    registry: ImageRegistry, registry_proxy: RegistryProxy, start_image_daemon: StartDaemon
) -> None:
    d = start_image_daemon(daemon_config(insecure=[registry_proxy.host]))
    via = registry_proxy.host
    d.pull(f"{via}/busybox:latest")
    reuse = d.metric("tether_image_layer_reuse_total")
    before = len(registry_proxy.blob_requests())
    d.pull(f"{via}/web:latest")
    # web = busybox's layer + its own: only its own layer and config are fetched
    assert len(registry_proxy.blob_requests()) - before == 2
    assert d.metric("tether_image_layer_reuse_total") == reuse + 1
    # pulling again: manifests only
    before = len(registry_proxy.blob_requests())
    d.pull(f"{via}/web:latest")
    assert len(registry_proxy.blob_requests()) == before


def test_concurrent_pulls_download_once(
    registry: ImageRegistry, registry_proxy: RegistryProxy, start_image_daemon: StartDaemon
) -> None:
    d = start_image_daemon(daemon_config(insecure=[registry_proxy.host]))
    ref = f"{registry_proxy.host}/layers:latest"
    results: list[str] = []
    errors: list[BaseException] = []

    def pull() -> None:
        try:
            results.append(d.pull(ref))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=pull) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(set(results)) == 1 and len(results) == 3
    blobs = registry_proxy.blob_requests()
    assert len(blobs) == len(set(blobs)), blobs  # each blob fetched once
    assert d.metric("tether_image_pulls_total", outcome="success") == 3
    assert d.metric("tether_image_pulls_coalesced_total") == 2
    total = d.metric("tether_image_pull_bytes_total")
    assert total == sum(p.stat().st_size for p in d.blobs_dir.iterdir()
                        if p.name in {b.split("sha256:")[1].split()[0] for b in blobs})


def test_hot_paths_from_memory(tmp_path: Path, start_image_daemon: StartDaemon) -> None:
    base = tmp_path / "hot"
    (base / "root").mkdir(parents=True)
    store = Store(str(base / "root" / "tether.db"))
    writes = []
    for i in range(200):
        h = f"{i:064x}"
        writes.append((store.images, ImageRecord(
            id=f"sha256:{h}", repo_tags=[f"example.com/img{i}:latest"],
            repo_digests=[f"example.com/img{i}@sha256:{h}"], size=1000 + i,
            details={"layers": [], "config": {"user": "1000"}}), False))
    store.write_sync(writes)
    store.close()
    d = start_image_daemon("", base=base)
    assert len(d.list()) == 200
    lists, stats = [], []
    for i in range(100):
        t0 = time.perf_counter()
        d.client.images.ListImages(pb.ListImagesRequest(), timeout=5)
        t1 = time.perf_counter()
        d.status(f"example.com/img{i}:latest")
        t2 = time.perf_counter()
        lists.append(t1 - t0)
        stats.append(t2 - t1)
    assert statistics.median(lists) < 0.002, statistics.median(lists)
    assert statistics.median(stats) < 0.002, statistics.median(stats)


def test_images_sharing_a_layer_fetch_it_once(
    registry: ImageRegistry, registry_proxy: RegistryProxy, start_image_daemon: StartDaemon
) -> None:
    """busybox and web (busybox's layer + its own) pulled at the same time: the shared base
    layer is downloaded and unpacked once, and both images are complete."""
    d = start_image_daemon(daemon_config(insecure=[registry_proxy.host]))
    refs = [f"{registry_proxy.host}/busybox:latest", f"{registry_proxy.host}/web:latest"]
    results: dict[str, str] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(refs))

    def pull(ref: str) -> None:
        start.wait()
        try:
            results[ref] = d.pull(ref)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=pull, args=(r,)) for r in refs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    blobs = registry_proxy.blob_requests()
    assert len(blobs) == len(set(blobs)), blobs  # each blob fetched once
    with rootfs_of(d, results[refs[1]], d.daemon.base / "c1") as rootfs:
        assert (rootfs / "bin" / "busybox").is_file()
        assert (rootfs / "www" / "index.html").is_file()
