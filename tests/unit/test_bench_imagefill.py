"""The image workload's fill set: distinct small images, and their pulls in setup."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

from bench.imagefill import build_image, fill_refs
from bench.templates import BenchConfig
from bench.workloads import Image, Target
from shim.cri import api_pb2 as pb


def _sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def test_fill_refs() -> None:
    refs = fill_refs("r:5000/tb/fill-", 200)
    assert refs[0] == "r:5000/tb/fill-000:latest"
    assert refs[-1] == "r:5000/tb/fill-199:latest"
    assert len(set(refs)) == 200
    assert fill_refs("p-", 1500)[7] == "p-0007:latest"


def test_images_are_distinct_and_consistent() -> None:
    digests = set()
    for i in range(5):
        layer, config, manifest = build_image(i)
        m = json.loads(manifest)
        assert m["config"]["digest"] == _sha(config)
        assert m["layers"][0]["digest"] == _sha(layer)
        raw = gzip.decompress(layer)
        assert json.loads(config)["rootfs"]["diff_ids"] == [_sha(raw)]
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            assert tar.getnames() == [f"fill-{i}"]
        digests.update({_sha(layer), _sha(config), _sha(manifest)})
    assert len(digests) == 15  # no blob shared
    assert build_image(3) == build_image(3)  # deterministic


class _Client:
    def __init__(self) -> None:
        self.present: set[str] = {"p-001:latest"}
        self.pulled: list[str] = []

    def image_present(self, ref: str) -> bool:
        return ref in self.present

    def call(self, method: str, request: Any, timeout: float | None = None) -> tuple[Any, float]:
        if method == "PullImage":
            self.pulled.append(request.image.image)
            self.present.add(request.image.image)
            return pb.PullImageResponse(image_ref="sha256:x"), 0.01
        if method == "ImageStatus":
            ok = request.image.image in self.present
            return pb.ImageStatusResponse(
                image=pb.Image(id="sha256:x" if ok else "", size=1000)), 0.001
        if method == "RemoveImage":
            self.present.discard(request.image.image)
        if method == "ListImages":
            return pb.ListImagesResponse(images=[pb.Image(id=r) for r in self.present]), 0.001
        return None, 0.001


def test_image_setup_pulls_fill_set(tmp_path: Path) -> None:
    cfg = BenchConfig(run_id="t", log_root=str(tmp_path), image_fill=3,
                      image_fill_prefix="p-", pull_image="big:latest", list_iterations=2)
    c = _Client()
    t = Target(label="fake", endpoint="unix:///x", client=c)  # type: ignore[arg-type]
    wl = Image(cfg)
    assert wl.setup(t) is None
    assert c.pulled == ["p-000:latest", "p-002:latest"]
    r0 = wl.run_round(t, 0, lambda: None)
    assert len(r0.samples["PullImage (fill image)"]) == 2
    assert r0.metrics["fill_images_pulled"] == [2]
    assert r0.metrics["images_listed"] == [4.0]
    assert not r0.errors
    r1 = wl.run_round(t, 1, lambda: None)
    assert "PullImage (fill image)" not in r1.samples
    assert "fill_images_pulled" not in r1.metrics
