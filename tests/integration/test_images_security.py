"""Hostile layers: every escape attempt fails the pull with InvalidArgument naming the layer
and the entry, writes nothing outside the snapshot dir and leaves nothing of the image."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from tests.integration.images_fixtures import *  # noqa: F403  (fixtures)
from tests.integration.images_fixtures import ImageDaemon, rootfs_of
from tests.integration.malicious_layers import HostileImage, build_and_push
from tests.rig.images import ImageRegistry


@pytest.fixture(scope="module")
def hostile_target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile-target")


@pytest.fixture(scope="module")
def hostile_images(
    registry: ImageRegistry, tmp_path_factory: pytest.TempPathFactory, hostile_target: Path
) -> dict[str, HostileImage]:
    images = build_and_push(registry.host, tmp_path_factory.mktemp("hostile"), hostile_target)
    return {h.case.name: h for h in images}


CASES = [
    "dotdot", "dotdot-nested", "symlink-write-through",
    "symlink-relative-write-through", "symlink-dir-then-file", "hardlink-outside",
    "hardlink-absolute", "hardlink-through-symlink", "device-outside",
    "device-through-symlink", "whiteout-dotdot",
]


@pytest.mark.parametrize("case", CASES)
def test_hostile_layer_refused(
    case: str,
    hostile_images: dict[str, HostileImage],
    hostile_target: Path,
    image_daemon: ImageDaemon,
) -> None:
    h = hostile_images[case]
    err = image_daemon.pull_error(h.ref)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    msg = err.details()
    assert h.ref in msg
    assert h.digests["layer1"] in msg, msg
    assert repr(h.case.entry) in msg, msg
    # nothing written outside, nothing kept inside
    assert list(hostile_target.iterdir()) == []
    assert sorted(p.name for p in image_daemon.snapshots_dir.iterdir()) == ["empty"]
    blobs = {p.name for p in image_daemon.blobs_dir.iterdir()}
    for key in ("layer0", "layer1", "config"):
        assert h.digests[key].split(":")[1] not in blobs, key
    assert image_daemon.list() == []
    assert list((image_daemon.images_dir / "tmp").iterdir()) == []


def test_absolute_names_are_confined_to_the_layer(
    hostile_images: dict[str, HostileImage], hostile_target: Path,
    image_daemon: ImageDaemon, tmp_path: Path,
) -> None:
    """``/<target>/abs.txt`` is a path in the layer (Docker and containerd read it so): the
    pull succeeds and the file is in the image, never at the host's ``/<target>``."""
    h = hostile_images["absolute"]
    image_id = image_daemon.pull(h.ref)
    assert list(hostile_target.iterdir()) == []
    with rootfs_of(image_daemon, image_id, tmp_path / "ctr") as root:
        inside = root / str(hostile_target).lstrip("/") / "abs.txt"
        assert inside.read_text() == "pwned\n"
    assert list(hostile_target.iterdir()) == []
