"""The in-memory catalog of images: lookups by id, tag, repo digest and manifest digest,
and a ready-made CRI message per image, so List/Status never touch the store or the disk."""

from __future__ import annotations

from collections.abc import Callable

from shim.cri import api_pb2 as pb
from shim.images.cri import to_pb
from shim.images.model import Image


class Catalog:
    def __init__(self, is_pinned: Callable[[Image], bool]) -> None:
        self._is_pinned = is_pinned
        self._images: dict[str, Image] = {}
        self._pb: dict[str, pb.Image] = {}
        self._names: dict[str, str] = {}  # "name:tag" and "name@digest" -> id
        self._manifests: dict[str, str] = {}  # platform manifest digest -> id

    def __len__(self) -> int:
        return len(self._images)

    def put(self, img: Image) -> None:
        self.remove(img.id)
        self._images[img.id] = img
        self._pb[img.id] = to_pb(img, self._is_pinned(img))
        for n in img.repo_tags + img.repo_digests:
            self._names[n] = img.id
        # the platform manifest's digest finds the image too (name@<manifest digest>)
        for rd in img.repo_digests:
            self._names[f"{rd.split('@', 1)[0]}@{img.manifest_digest}"] = img.id
        if img.manifest_digest:
            self._manifests[img.manifest_digest] = img.id

    def remove(self, image_id: str) -> Image | None:
        old = self._images.pop(image_id, None)
        self._pb.pop(image_id, None)
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

    def message(self, image_id: str) -> pb.Image | None:
        return self._pb.get(image_id)

    def messages(self) -> list[pb.Image]:
        return list(self._pb.values())
