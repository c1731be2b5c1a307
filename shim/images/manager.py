"""ImageManager: the image service's façade. It builds the parts and holds what they share
(the blob and snapshot stores, the catalog); each concern is its own module:

* ``puller.py``: pulls (registries config, sessions and auth, single flights, layer pool);
* ``names.py``: every write of an image record (names given by pulls, untag, delete);
* ``gc.py``: garbage collection of blobs and snapshots, and what a crash leaves;
* ``rootfs.py``: containers' rootfs and image-volume mounts.

Here: start-up and reload, lookups (memory only), removal, filesystem usage. Whether a
container uses an image is the container side's knowledge: it hands in ``in_use``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shim import errors, log
from shim.config import Config, ImagesConfig
from shim.images import auth as authmod
from shim.images.blobs import BlobError, BlobStore
from shim.images.catalog import Catalog
from shim.images.fsusage import Usage, measure
from shim.images.gc import Collector
from shim.images.manifest import ImageConfig
from shim.images.model import Image, ImageSummary
from shim.images.names import Names
from shim.images.puller import Puller
from shim.images.reference import InvalidReference, is_image_id, normalize_id, parse
from shim.images.rootfs import IMAGE_VOLUMES_DIR, Rootfs
from shim.images.shifted import RootfsIds
from shim.images.snapshots import SnapshotStore
from shim.store import Store

__all__ = ["IMAGE_VOLUMES_DIR", "FsInfo", "ImageManager", "InUse"]

FSINFO_TTL = 5.0

# Who uses an image (a container, as "container <id> (<name>)"), or None: removal refuses an
# image in use. Given by the container side, which owns that knowledge.
InUse = Callable[[Image], str | None]


@dataclass(frozen=True)
class FsInfo:
    image: Usage
    container: Usage


class ImageManager:
    def __init__(self, cfg: Config, store: Store, *, in_use: InUse,
                 containers_dir: str | None = None) -> None:
        self.cfg = cfg.images
        self.store = store
        self.logger = log.get("images")
        self._in_use = in_use
        root = cfg.paths.root
        self.base = os.path.join(root, "images")
        self.blobs = BlobStore(os.path.join(self.base, "blobs"))
        self.snapshots = SnapshotStore(os.path.join(self.base, "snapshots"))
        self.tmp = os.path.join(self.base, "tmp")  # blobs while they download
        self.containers_dir = containers_dir or os.path.join(root, "containers")
        self._pinned_names = self._pause_names()
        self.catalog = Catalog(lambda img: bool(self._pinned_names & set(img.repo_tags)))
        for rec in store.images.list():
            self.catalog.put(Image.from_record(rec))
        self.collector = Collector(self.blobs, self.snapshots, self.catalog, self._forget_fsinfo)
        self.names = Names(store, self.catalog, self._forget_fsinfo)
        self.puller = Puller(self.cfg, self.catalog, self.blobs, self.snapshots, self.tmp,
                             self.names, self.collector, self._ensure_setup)
        self.rootfs = Rootfs(self.snapshots)
        self._ready = False
        self._fsinfo: tuple[float, FsInfo] | None = None

    # --- setup and crash recovery ---------------------------------------------------------
    def _pause_names(self) -> set[str]:
        if not self.cfg.pause_image:
            return set()
        try:
            return {str(parse(self.cfg.pause_image))}
        except InvalidReference:
            return set()

    def _setup(self) -> None:
        """Directories and the registries config (idempotent, sync)."""
        for d in (self.base, self.tmp):
            os.makedirs(d, mode=0o700, exist_ok=True)
        # searchable, not listable: see the daemon's root dir
        os.makedirs(self.containers_dir, mode=0o711, exist_ok=True)
        os.chmod(self.containers_dir, 0o711)
        self.blobs.ensure()
        os.makedirs(self.snapshots.root, mode=0o700, exist_ok=True)
        self.snapshots.ensure()
        self.puller.load_registries()
        self._ready = True

    async def _ensure_setup(self) -> None:
        if not self._ready:
            await asyncio.to_thread(self._setup)

    def reload(self, cfg: ImagesConfig) -> bool:
        """SIGHUP: take the new ``[images]`` keys (all but ``max_concurrent_downloads``, which
        sizes a thread pool: restart) and read registries.conf again, for the next pulls.
        True if the registries config (file or Tether's mirrors/insecure) changed."""
        self.cfg = dataclasses.replace(
            cfg, max_concurrent_downloads=self.cfg.max_concurrent_downloads)
        pinned = self._pause_names()
        if pinned != self._pinned_names:
            self._pinned_names = pinned
            for img in self.catalog.images():
                self.catalog.put(img)  # a new summary with the new pinned flag
        return self.puller.reload(self.cfg)

    async def reconcile(self) -> None:
        """At daemon start: remove what an interrupted pull or remove left, check records."""
        await asyncio.to_thread(self._setup)
        removed = await asyncio.to_thread(self.collector.clean_temp, self.tmp)
        dropped = []
        async with self.names.lock:
            for img in self.catalog.images():
                missing = [c for c in img.chain_ids if not self.snapshots.exists(c)]
                if missing:
                    await self.names.delete(img)
                    dropped.append(img.id)
                    self.logger.warning("image lost its snapshots; record dropped",
                                        image=img.id, missing=missing)
        freed = await self.collector.collect(None)
        self.logger.info("images reconciled", images=len(self.catalog), temp_removed=removed,
                         dropped=dropped, gc=freed)

    async def close(self) -> None:
        """At shutdown, before the store closes: stop pulls under way (connections aborted,
        temp files removed); their callers get CANCELLED and the next start finds nothing
        half."""
        await self.puller.close()

    # --- lookups (memory only) -----------------------------------------------------------
    def resolve(self, spec: str) -> tuple[Image | None, str]:
        """The image ``spec`` names (id, tag, digest reference, id prefix) and how it named it:
        "id", "tag" or "digest"."""
        if is_image_id(spec):
            return self.catalog.get(normalize_id(spec)), "id"
        try:
            cands = self.puller.candidates(spec)
        except InvalidReference:
            cands = []
        for c in cands:
            img = self.catalog.by_name(str(c))
            if img is not None:
                return img, "digest" if c.digest else "tag"
        bare = spec.removeprefix("sha256:")
        if 12 <= len(bare) < 64 and all(ch in "0123456789abcdef" for ch in bare):
            return self.catalog.by_prefix(bare), "id"
        return None, ""

    def get(self, spec: str) -> Image | None:
        return self.resolve(spec)[0]

    def status(self, spec: str) -> ImageSummary | None:
        img = self.get(spec)
        return self.catalog.summary(img.id) if img is not None else None

    def list_images(self, spec: str = "") -> list[ImageSummary]:
        if not spec:
            return self.catalog.summaries()
        found = self.status(spec)
        return [found] if found is not None else []

    def image_config(self, image_id: str) -> ImageConfig:
        img = self.get(image_id)
        if img is None:
            raise errors.NotFound(f"image {image_id} not found")
        return img.config

    def verbose_info(self, image_id: str) -> dict[str, str]:
        """ImageStatus verbose: the image config and manifest as stored (small blob reads);
        empty for an unknown image."""
        img = self.catalog.get(image_id)
        if img is None:
            return {}
        info: dict[str, Any] = {
            "id": img.id,
            "manifestDigest": img.manifest_digest,
            "manifestMediaType": img.manifest_media_type,
            "platform": img.platform,
            "chainIDs": list(img.chain_ids),
            "layers": [
                {"digest": x.digest, "mediaType": x.media_type, "size": x.size,
                 "diffID": x.diff_id, "snapshot": self.snapshots.fs(x.chain_id)}
                for x in img.layers
            ],
            "pinned": bool(self._pinned_names & set(img.repo_tags)),
        }
        for key, digest in (("imageSpec", img.config_blob), ("manifest", img.stored_manifest)):
            try:
                info[key] = json.loads(self.blobs.read_verified(digest))
            except (BlobError, ValueError) as e:
                info[key] = {"error": str(e)}
        return {"info": json.dumps(info, sort_keys=True)}

    # --- pull ------------------------------------------------------------------------------
    async def pull(self, image: str, creds: authmod.Credentials | None = None) -> str:
        """Pull ``image``; returns the image id (config digest)."""
        return await self.puller.pull(image, creds)

    # --- remove ----------------------------------------------------------------------------
    async def remove(self, spec: str) -> None:
        async with self.names.lock:
            img, how = self.resolve(spec)
            if img is None:
                return
            if how == "tag" and len(img.repo_tags) > 1:
                tag = next(str(c) for c in self.puller.candidates(spec)
                           if str(c) in img.repo_tags)
                await self.names.untag(img, tag)
                self.logger.info("image untagged", image=img.id, tag=tag)
                return
            user = self._in_use(img)
            if user is not None:
                raise errors.FailedPrecondition(f"image {spec} ({img.id}) is in use by {user}")
            await self.names.delete(img)
        self.logger.info("image removed", image=img.id, tags=list(img.repo_tags))
        await self.collector.collect(img.blobs() | set(img.chain_ids))
        self._fsinfo = None

    # --- filesystem usage -------------------------------------------------------------------
    def _forget_fsinfo(self) -> None:
        self._fsinfo = None

    async def fs_info(self) -> FsInfo:
        now = time.monotonic()
        if self._fsinfo is not None and now - self._fsinfo[0] < FSINFO_TTL:
            return self._fsinfo[1]

        def work() -> FsInfo:
            ts = time.time_ns()
            return FsInfo(measure(self.base, ts), measure(self.containers_dir, ts))

        info = await asyncio.to_thread(work)
        self._fsinfo = (now, info)
        return info

    # --- rootfs for containers --------------------------------------------------------------
    async def mount_rootfs(self, image_id: str, container_dir: str,
                           ids: RootfsIds | None = None) -> str:
        """Overlay of the image's layers at ``container_dir/rootfs``; returns that path.
        ``ids``: a container in a user namespace, which sees the image's files as its own."""
        img = self.get(image_id)
        if img is None:
            raise errors.NotFound(f"image {image_id} not found")
        return await self.rootfs.mount(img, container_dir, ids)

    async def mount_image_volume(self, spec: str, target: str,
                                 ids: RootfsIds | None = None) -> tuple[str, str]:
        """Image ``spec`` (a reference or id, pulled already) read-only at ``target``:
        (image id, mount point)."""
        img = self.get(spec)
        if img is None:
            raise errors.NotFound(f"image {spec!r} not found (pull it first)")
        return img.id, await self.rootfs.mount_volume(img, target, ids)

    def drop_shifted(self, keep: set[str]) -> None:
        """Remove the shifted layer copies of every mapping not in ``keep``: the caller knows
        which its containers still use."""
        shifted = self.rootfs.shifted
        for key in shifted.keys() - keep:
            shifted.drop(key)

    async def unmount_rootfs(self, container_dir: str) -> None:
        """The rootfs and the image volumes of a container."""
        await self.rootfs.unmount(container_dir)
