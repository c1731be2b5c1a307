"""The in-memory catalog of images: lookups by id, tag, repo digest and manifest digest, and
a ready-made summary per image (what List/Status report), so those never touch the store or
the disk; ``memo`` lets the RPC edge keep its conversion of each summary."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from shim.images.model import Image, ImageSummary, summarize
from shim.store.memo import IdentityMemo

T = TypeVar("T")


class Catalog:
    def __init__(self, is_pinned: Callable[[Image], bool]) -> None:
        self._is_pinned = is_pinned
        self._images: dict[str, Image] = {}
        self._summaries: dict[str, ImageSummary] = {}
        self._names: dict[str, str] = {}  # "name:tag" and "name@digest" -> id
        self._manifests: dict[str, str] = {}  # platform manifest digest -> id
        self._memo = IdentityMemo()

    def __len__(self) -> int:
        return len(self._images)

    def put(self, img: Image) -> None:
        self.remove(img.id)
        self._images[img.id] = img
        self._summaries[img.id] = summarize(img, self._is_pinned(img))
        for n in img.repo_tags + img.repo_digests:
            self._names[n] = img.id
        # the platform manifest's digest finds the image too (name@<manifest digest>)
        for rd in img.repo_digests:
            self._names[f"{rd.split('@', 1)[0]}@{img.manifest_digest}"] = img.id
        if img.manifest_digest:
            self._manifests[img.manifest_digest] = img.id

    def remove(self, image_id: str) -> Image | None:
        old = self._images.pop(image_id, None)
        self._summaries.pop(image_id, None)
        self._memo.forget(image_id)
        if old is not None:
            self._names = {k: v for k, v in self._names.items() if v != image_id}
            if self._manifests.get(old.manifest_digest) == image_id:
                del self._manifests[old.manifest_digest]
        return old

    def get(self, image_id: str) -> Image | None:
        return self._images.get(image_id)

    def by_name(self, name: str) -> Image | None:
        image_id = self._names.get(name)
        return self._images.get(image_id) if image_id else None

    def by_manifest(self, digest: str) -> Image | None:
        image_id = self._manifests.get(digest)
        return self._images.get(image_id) if image_id else None

    def by_prefix(self, prefix: str) -> Image | None:
        found = [i for i in self._images if i.removeprefix("sha256:").startswith(prefix)]
        return self._images[found[0]] if len(found) == 1 else None

    def images(self) -> list[Image]:
        return list(self._images.values())

    def summary(self, image_id: str) -> ImageSummary | None:
        return self._summaries.get(image_id)

    def summaries(self) -> list[ImageSummary]:
        return list(self._summaries.values())

    def memo(self, key: str, fn: Callable[[ImageSummary], T]) -> Callable[[ImageSummary], T]:
        """``fn`` cached per image until its summary is replaced (each ``put`` makes a new
        object, so identity tells). For the hot-path conversion to CRI messages."""
        return self._memo.wrap(key, fn)
