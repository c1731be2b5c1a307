"""Manifests, indexes and image configs: typed views of the registry's JSON documents.

Docker schema 2 and OCI documents are read the same way (their fields coincide); a manifest
list / image index is resolved to the node's platform by :func:`select_platform`. Pure
functions; malformed documents raise ``ManifestError``.
"""

from __future__ import annotations

import hashlib
import json
import platform as _platform
import re
from dataclasses import dataclass, field
from typing import Any

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)

LAYER_GZIP = (
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
)
LAYER_ZSTD = (
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
)
LAYER_TAR = (
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
)
LAYER_TYPES = LAYER_GZIP + LAYER_ZSTD + LAYER_TAR


class ManifestError(ValueError):
    """A registry document Tether cannot use; the message says which part."""


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _load(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ManifestError(f"{what} is not JSON: {e}") from e
    if not isinstance(doc, dict):
        raise ManifestError(f"{what} is not a JSON object")
    return doc


_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def is_digest(text: str) -> bool:
    """``sha256:`` and 64 lowercase hex digits: the only digests stored or used as paths."""
    return _DIGEST.fullmatch(text) is not None


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None

    @classmethod
    def from_json(cls, d: Any, what: str) -> Descriptor:
        if not isinstance(d, dict) or not isinstance(d.get("digest"), str):
            raise ManifestError(f"{what}: descriptor without a digest")
        if not is_digest(d["digest"]):
            raise ManifestError(f"{what}: unsupported digest {d['digest']!r}")
        size = d.get("size", 0)
        if not isinstance(size, int) or size < 0:
            raise ManifestError(f"{what}: bad size")
        p = d.get("platform")
        return cls(
            media_type=str(d.get("mediaType", "")),
            digest=d["digest"],
            size=size,
            platform=Platform.from_json(p) if isinstance(p, dict) else None,
        )


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Platform:
        return cls(str(d.get("os", "")), str(d.get("architecture", "")), str(d.get("variant", "")))

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


_ARCH = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i686": ("386", ""),
    "i386": ("386", ""),
    "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
}


def node_platform() -> Platform:
    arch, variant = _ARCH.get(_platform.machine(), (_platform.machine(), ""))
    return Platform("linux", arch, variant)


def _variant_rank(want: Platform, have: Platform) -> int | None:
    """0 best; None: does not run here. arm64 "" means v8; amd64 "" means v1."""
    defaults = {"arm64": "v8", "amd64": "v1"}
    w = want.variant or defaults.get(want.architecture, "")
    h = have.variant or defaults.get(have.architecture, "")
    if w == h:
        return 0 if have.variant == want.variant else 1
    if want.architecture == "arm" and w.startswith("v") and h.startswith("v"):
        try:  # an armv7 node runs v6 and v5 images
            if int(h[1:]) < int(w[1:]):
                return 1 + int(w[1:]) - int(h[1:])
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class Index:
    media_type: str
    manifests: tuple[Descriptor, ...]

    @classmethod
    def parse(cls, data: bytes) -> Index:
        doc = _load(data, "image index")
        items = doc.get("manifests")
        if not isinstance(items, list):
            raise ManifestError("image index without a manifests list")
        return cls(
            str(doc.get("mediaType", OCI_INDEX)),
            tuple(Descriptor.from_json(m, f"index entry {i}") for i, m in enumerate(items)),
        )


def select_platform(index: Index, want: Platform) -> Descriptor | None:
    """The entry for ``want`` (best variant match first), None when the index has none."""
    best: tuple[int, int, Descriptor] | None = None
    for pos, d in enumerate(index.manifests):
        p = d.platform
        if p is None or p.os != want.os or p.architecture != want.architecture:
            continue
        if d.media_type and d.media_type not in MANIFEST_TYPES:
            continue
        rank = _variant_rank(want, p)
        if rank is None:
            continue
        if best is None or (rank, pos) < best[:2]:
            best = (rank, pos, d)
    return best[2] if best else None


@dataclass(frozen=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]

    @classmethod
    def parse(cls, data: bytes) -> Manifest:
        doc = _load(data, "manifest")
        mt = str(doc.get("mediaType", ""))
        if doc.get("schemaVersion") == 1 or mt in DOCKER_SCHEMA1:
            raise ManifestError("Docker schema 1 manifests are not supported")
        if "manifests" in doc:
            raise ManifestError("is an image index, not a manifest")
        layers = doc.get("layers")
        if not isinstance(layers, list):
            raise ManifestError("manifest without a layers list")
        parsed = tuple(Descriptor.from_json(x, f"layer {i}") for i, x in enumerate(layers))
        for i, layer in enumerate(parsed):
            if layer.media_type not in LAYER_TYPES:
                raise ManifestError(f"layer {i} ({layer.digest}): unsupported media type "
                                    f"{layer.media_type!r}")
        return cls(mt or OCI_MANIFEST, Descriptor.from_json(doc.get("config"), "config"), parsed)


def kind(data: bytes) -> str:
    """ "index" or "manifest" for a raw registry document (media type, else its shape)."""
    doc = _load(data, "registry document")
    mt = doc.get("mediaType", "")
    if mt in INDEX_TYPES or (not mt and "manifests" in doc):
        return "index"
    return "manifest"


@dataclass(frozen=True)
class ImageConfig:
    """What the OCI spec generator needs from the image (``config`` of the config blob)."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    stop_signal: str = ""
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    os: str = ""
    architecture: str = ""
    variant: str = ""
    created: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "entrypoint": list(self.entrypoint), "cmd": list(self.cmd), "env": list(self.env),
            "working_dir": self.working_dir, "user": self.user, "stop_signal": self.stop_signal,
            "exposed_ports": list(self.exposed_ports), "volumes": list(self.volumes),
            "labels": dict(self.labels), "os": self.os, "architecture": self.architecture,
            "variant": self.variant, "created": self.created,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ImageConfig:
        return cls(
            entrypoint=tuple(d.get("entrypoint", ())), cmd=tuple(d.get("cmd", ())),
            env=tuple(d.get("env", ())), working_dir=d.get("working_dir", ""),
            user=d.get("user", ""), stop_signal=d.get("stop_signal", ""),
            exposed_ports=tuple(d.get("exposed_ports", ())), volumes=tuple(d.get("volumes", ())),
            labels=dict(d.get("labels", {})), os=d.get("os", ""),
            architecture=d.get("architecture", ""), variant=d.get("variant", ""),
            created=d.get("created", ""),
        )


def _strs(v: Any, what: str) -> tuple[str, ...]:
    if v is None:
        return ()
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise ManifestError(f"image config: {what} must be a list of strings")
    return tuple(v)


def _keys(v: Any) -> tuple[str, ...]:
    return tuple(sorted(v)) if isinstance(v, dict) else ()


@dataclass(frozen=True)
class ConfigBlob:
    config: ImageConfig
    diff_ids: tuple[str, ...]

    @classmethod
    def parse(cls, data: bytes) -> ConfigBlob:
        doc = _load(data, "image config")
        rootfs = doc.get("rootfs")
        if not isinstance(rootfs, dict):
            raise ManifestError("image config without rootfs")
        diff_ids = _strs(rootfs.get("diff_ids"), "rootfs.diff_ids")
        for d in diff_ids:
            if not is_digest(d):  # it names a snapshot directory (the first chain id)
                raise ManifestError(f"image config: unsupported diff_id {d!r}")
        c = doc.get("config") or {}
        if not isinstance(c, dict):
            raise ManifestError("image config: config must be an object")
        labels = c.get("Labels") or {}
        if not isinstance(labels, dict):
            raise ManifestError("image config: Labels must be an object")
        cfg = ImageConfig(
            entrypoint=_strs(c.get("Entrypoint"), "Entrypoint"),
            cmd=_strs(c.get("Cmd"), "Cmd"),
            env=_strs(c.get("Env"), "Env"),
            working_dir=str(c.get("WorkingDir") or ""),
            user=str(c.get("User") or ""),
            stop_signal=str(c.get("StopSignal") or ""),
            exposed_ports=_keys(c.get("ExposedPorts")),
            volumes=_keys(c.get("Volumes")),
            labels={str(k): str(v) for k, v in labels.items()},
            os=str(doc.get("os", "")),
            architecture=str(doc.get("architecture", "")),
            variant=str(doc.get("variant", "")),
            created=str(doc.get("created", "")),
        )
        return cls(cfg, diff_ids)


def chain_ids(diff_ids: tuple[str, ...] | list[str]) -> list[str]:
    """OCI ChainID of each layer prefix: chain(n) = sha256(chain(n-1) + " " + diff_id(n))."""
    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else digest_of(f"{out[-1]} {d}".encode()))
    return out


def user_ids(user: str) -> tuple[int | None, str]:
    """The image's User as the CRI reports it: (uid, "") when numeric, else (None, name)."""
    name = user.split(":", 1)[0]
    if not name:
        return None, ""
    if name.isdigit():
        return int(name), ""
    return None, name
