"""The image manager's parts on their own: garbage collection with pins, the container
side's in-use check."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from shim.containers.types import ContainerDetails
from shim.containers.usage import image_user
from shim.images.blobs import BlobStore
from shim.images.catalog import Catalog
from shim.images.gc import Collector
from shim.images.model import Image, Layer
from shim.images.snapshots import SnapshotStore
from shim.store import ContainerRecord, Store

ID = "sha256:" + "a" * 64


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_collect_keeps_what_images_and_pins_reference(tmp_path: Path) -> None:
    blobs = BlobStore(str(tmp_path / "blobs"))
    snaps = SnapshotStore(str(tmp_path / "snapshots"))
    blobs.ensure()
    snaps.ensure()
    (tmp_path / "tmp").mkdir()
    data = {name: name.encode() for name in ("kept", "pinned", "garbage")}
    for raw in data.values():
        blobs.write(digest(raw), raw)
    chain = "sha256:" + "c" * 64
    snaps.commit(snaps.new_tmp(chain), chain)
    catalog = Catalog(lambda i: False)
    catalog.put(Image(id=ID, config_blob=digest(b"kept"),
                      layers=(Layer("sha256:" + "d" * 64, "", 1, chain, chain),)))
    freed_calls: list[int] = []
    gc = Collector(blobs, snaps, catalog, lambda: freed_calls.append(1))

    async def run() -> dict[str, int]:
        pins = await gc.pin([digest(b"pinned")])
        freed = await gc.collect(None)
        await gc.unpin(pins)
        return freed

    assert asyncio.run(run()) == {"blobs": 1, "bytes": len(b"garbage"), "snapshots": 0}
    assert blobs.digests() == {digest(b"kept"), digest(b"pinned")}
    assert snaps.exists(chain) and freed_calls == [1]
    catalog.remove(ID)
    freed = asyncio.run(gc.collect(None))  # unpinned, and the image is gone
    assert freed["blobs"] == 2 and freed["snapshots"] == 1 and blobs.digests() == set()


def test_image_user(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "t.db"))
    try:
        img = Image(id=ID, repo_tags=("r.io/x:1",))
        assert image_user(store, img) is None
        asyncio.run(store.containers.put(ContainerRecord(id="c1", name="web", image="r.io/x:1")))
        assert image_user(store, img) == "container c1 (web)"
        other = Image(id="sha256:" + "b" * 64)
        assert image_user(store, other) is None
        asyncio.run(store.containers.put(ContainerRecord(
            id="c2", details=ContainerDetails(image_volume_ids=[other.id]))))
        assert image_user(store, other) == "container c2"
    finally:
        store.close()
