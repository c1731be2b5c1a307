"""The in-memory catalog, the image model's store form, single-flight."""

from __future__ import annotations

import asyncio

from shim.images.catalog import Catalog
from shim.images.manifest import ImageConfig
from shim.images.model import Image, ImageSummary, Layer, add_name, drop_tag
from shim.images.singleflight import SingleFlight

ID = "sha256:" + "a" * 64
MD = "sha256:" + "b" * 64


def image(**kw: object) -> Image:
    base = dict(
        id=ID, repo_tags=("r.io/x:1",), repo_digests=(f"r.io/x@{'sha256:' + 'c' * 64}",),
        size=10, manifest_digest=MD, stored_manifest=MD, config_blob=ID,
        layers=(Layer("sha256:" + "d" * 64, "application/vnd.oci.image.layer.v1.tar+gzip", 5,
                      "sha256:" + "e" * 64, "sha256:" + "e" * 64),),
        config=ImageConfig(user="alice", cmd=("sh",)),
    )
    base.update(kw)
    return Image(**base)  # type: ignore[arg-type]


def test_record_round_trip() -> None:
    img = image()
    assert Image.from_record(img.to_record()) == img


def test_catalog_lookups_and_messages() -> None:
    cat = Catalog(lambda i: "r.io/x:1" in i.repo_tags)
    img = image()
    cat.put(img)
    assert cat.by_name("r.io/x:1") is img
    assert cat.by_name(img.repo_digests[0]) is img
    assert cat.by_name(f"r.io/x@{MD}") is img  # the platform manifest digest too
    assert cat.by_manifest(MD) is img
    assert cat.by_prefix("aaaaaaaaaaaa") is img
    s = cat.summary(ID)
    assert s is not None and s.pinned and s.username == "alice" and s.uid is None
    renamed = drop_tag(add_name(img, "r.io/y:2", None), "r.io/x:1")
    cat.put(renamed)
    assert cat.by_name("r.io/x:1") is None and cat.by_name("r.io/y:2") is renamed
    s2 = cat.summary(ID)
    assert s2 is not None and not s2.pinned and s2.repo_tags == ("r.io/y:2",)
    cat.remove(ID)
    assert len(cat) == 0 and cat.by_manifest(MD) is None and cat.summaries() == []


def test_catalog_memo_until_the_image_changes() -> None:
    cat = Catalog(lambda i: False)
    calls: list[str] = []

    def convert(s: ImageSummary) -> tuple[str, ...]:
        calls.append(s.id)
        return s.repo_tags

    memo = cat.memo("k", convert)
    cat.put(image())
    s = cat.summary(ID)
    assert s is not None and memo(s) == memo(s) == ("r.io/x:1",) and len(calls) == 1
    cat.put(add_name(image(), "r.io/y:2", None))  # a new summary: converted again
    s2 = cat.summary(ID)
    assert s2 is not None and memo(s2) == ("r.io/x:1", "r.io/y:2") and len(calls) == 2
    cat.remove(ID)
    assert memo(s2) and len(calls) == 3  # removal forgot it


def test_add_name_one_digest_per_repo() -> None:
    img = image()
    new = add_name(img, "r.io/x:1", "r.io/x@sha256:" + "f" * 64)
    assert new.repo_tags == ("r.io/x:1",)
    assert new.repo_digests == ("r.io/x@sha256:" + "f" * 64,)


def test_single_flight_shares_one_run() -> None:
    calls = 0

    async def work() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return "done"

    async def main() -> list[tuple[str, bool]]:
        sf: SingleFlight[str] = SingleFlight()
        return list(await asyncio.gather(*(sf.do("k", work) for _ in range(3))))

    results = asyncio.run(main())
    assert calls == 1
    assert [r for r, _ in results] == ["done"] * 3
    assert sorted(shared for _, shared in results) == [False, True, True]
