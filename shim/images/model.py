"""The image as Tether keeps it: typed, immutable, and its form in the store.

An ``ImageRecord`` is written only once every layer of the image is unpacked, so a record in
the store always describes a usable image; ``details`` holds the fields below.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from shim.images.manifest import ImageConfig, user_ids
from shim.store import ImageRecord

DETAILS_VERSION = 1


@dataclass(frozen=True)
class Layer:
    digest: str  # blob digest (compressed), as in the manifest
    media_type: str
    size: int
    diff_id: str
    chain_id: str


@dataclass(frozen=True)
class Image:
    id: str  # config digest as the registry has it: the image ID kubelet and crictl see
    repo_tags: tuple[str, ...] = ()
    repo_digests: tuple[str, ...] = ()
    size: int = 0  # config + compressed layers, as containerd reports
    created_at: int = 0  # ns, when pulled
    manifest_digest: str = ""  # the platform manifest at the registry
    manifest_media_type: str = ""
    stored_manifest: str = ""  # the manifest blob as stored (before ad8ac56: skopeo's OCI copy)
    config_blob: str = ""  # config blob in the blob store (differs from id if converted)
    layers: tuple[Layer, ...] = ()
    config: ImageConfig = field(default_factory=ImageConfig)
    platform: str = ""

    @property
    def chain_ids(self) -> tuple[str, ...]:
        return tuple(layer.chain_id for layer in self.layers)

    def blobs(self) -> set[str]:
        return {self.stored_manifest, self.config_blob, *(layer.digest for layer in self.layers)}

    def names(self) -> set[str]:
        return set(self.repo_tags) | set(self.repo_digests)

    def with_names(self, tags: tuple[str, ...], digests: tuple[str, ...]) -> Image:
        return replace(self, repo_tags=tags, repo_digests=digests)

    def to_record(self) -> ImageRecord:
        return ImageRecord(
            id=self.id,
            repo_tags=list(self.repo_tags),
            repo_digests=list(self.repo_digests),
            size=self.size,
            created_at=self.created_at,
            details={
                "version": DETAILS_VERSION,
                "manifest_digest": self.manifest_digest,
                "manifest_media_type": self.manifest_media_type,
                "stored_manifest": self.stored_manifest,
                "config_blob": self.config_blob,
                "platform": self.platform,
                "layers": [
                    {"digest": x.digest, "media_type": x.media_type, "size": x.size,
                     "diff_id": x.diff_id, "chain_id": x.chain_id}
                    for x in self.layers
                ],
                "config": self.config.to_json(),
            },
        )

    @classmethod
    def from_record(cls, rec: ImageRecord) -> Image:
        d: dict[str, Any] = rec.details
        return cls(
            id=rec.id,
            repo_tags=tuple(rec.repo_tags),
            repo_digests=tuple(rec.repo_digests),
            size=rec.size,
            created_at=rec.created_at,
            manifest_digest=d.get("manifest_digest", ""),
            manifest_media_type=d.get("manifest_media_type", ""),
            stored_manifest=d.get("stored_manifest", ""),
            config_blob=d.get("config_blob", rec.id),
            layers=tuple(Layer(**x) for x in d.get("layers", [])),
            config=ImageConfig.from_json(d.get("config", {})),
            platform=d.get("platform", ""),
        )


@dataclass(frozen=True)
class ImageSummary:
    """What ListImages and ImageStatus report of an image. The catalog makes a new one each
    time the image (or its pinned flag) changes, so the RPC edge may cache its conversion
    per object."""

    id: str
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    size: int
    uid: int | None  # the config's user when numeric (its part before ":")
    username: str  # the config's user when a name
    pinned: bool


def summarize(img: Image, pinned: bool) -> ImageSummary:
    uid, username = user_ids(img.config.user)
    return ImageSummary(id=img.id, repo_tags=img.repo_tags, repo_digests=img.repo_digests,
                        size=img.size, uid=uid, username=username, pinned=pinned)


def add_name(
    img: Image, tag: str | None, repo_digest: str | None
) -> Image:
    """``img`` also known as ``tag`` / ``repo_digest`` (one repo digest per repository)."""
    tags = img.repo_tags if tag is None or tag in img.repo_tags else (*img.repo_tags, tag)
    digests = img.repo_digests
    if repo_digest is not None and repo_digest not in digests:
        repo = repo_digest.split("@", 1)[0]
        digests = (*(d for d in digests if d.split("@", 1)[0] != repo), repo_digest)
    return img.with_names(tags, digests)


def drop_tag(img: Image, tag: str) -> Image:
    return img.with_names(tuple(t for t in img.repo_tags if t != tag), img.repo_digests)
