"""ImageManager: pull, list, status, remove, filesystem usage, and rootfs mounts for containers.

A pull: resolve the name (aliases, search registries) → ``skopeo inspect --raw`` (the index
or manifest; its digest is the repo digest) → pick the node's platform → ``skopeo copy`` of
that manifest, by digest, into a temp OCI layout whose blobs land in the shared blob store →
unpack each missing layer into its snapshot (diff_id checked) → one store transaction makes
the image visible with its names. Concurrent pulls of one image share the work (single
flight, per name and again per manifest digest).

Blobs and snapshots are not reference-counted in a table: an image's record lists them, so
what no record (and no pull under way) uses is garbage. Garbage is collected when an image
is removed, when a pull fails, and by :meth:`reconcile` at start (with everything a crash may
have left: temp layouts, temp snapshots, auth files).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from shim import errors, log
from shim.config import Config
from shim.cri import api_pb2 as pb
from shim.images import auth as authmod
from shim.images import metrics, registries
from shim.images.blobs import BlobError, BlobStore
from shim.images.catalog import Catalog
from shim.images.fsusage import Usage, measure
from shim.images.manifest import (
    ConfigBlob,
    ImageConfig,
    Index,
    Manifest,
    ManifestError,
    chain_ids,
    digest_of,
    kind,
    node_platform,
    select_platform,
)
from shim.images.model import Image, Layer, add_name, drop_tag
from shim.images.reference import (
    InvalidReference,
    Reference,
    is_image_id,
    normalize_id,
    parse,
    parse_name,
)
from shim.images.singleflight import SingleFlight
from shim.images.skopeo import NoProgress, Skopeo, SkopeoEnv, SkopeoFailure
from shim.images.snapshots import EMPTY, SnapshotStore, mount_overlay, unmount_overlay
from shim.images.unpack import LayerError, UnsafeEntry, unpack
from shim.store import Store

POLICY = {"default": [{"type": "insecureAcceptAnything"}]}
FSINFO_TTL = 5.0


@dataclass(frozen=True)
class FsInfo:
    image: Usage
    container: Usage


class ImageManager:
    def __init__(self, cfg: Config, store: Store, containers_dir: str | None = None) -> None:
        self.cfg = cfg.images
        self.store = store
        self.logger = log.get("images")
        root = cfg.paths.root
        self.base = os.path.join(root, "images")
        self.blobs = BlobStore(os.path.join(self.base, "blobs"))
        self.snapshots = SnapshotStore(os.path.join(self.base, "snapshots"))
        self.tmp = os.path.join(self.base, "tmp")
        self.run = os.path.join(cfg.paths.run, "images")
        self.auth_dir = os.path.join(self.run, "auth")
        self.containers_dir = containers_dir or os.path.join(root, "containers")
        self.platform = node_platform()
        self.skopeo = Skopeo(
            SkopeoEnv(
                registries_conf=os.path.join(self.run, "registries.conf"),
                policy=os.path.join(self.run, "policy.json"),
                home=os.path.join(self.run, "home"),
                tmpdir=self.tmp,
            )
        )
        self._conf = registries.RegistriesConf()
        self._conf_error: str | None = None
        self._pinned_names = self._pause_names()
        self.catalog = Catalog(lambda img: bool(self._pinned_names & set(img.repo_tags)))
        for rec in store.images.list():
            self.catalog.put(Image.from_record(rec))
        self._flights: SingleFlight[str] = SingleFlight()
        self._fetches: SingleFlight[str] = SingleFlight()
        self._gc_lock = asyncio.Lock()
        self._meta_lock = asyncio.Lock()
        self._pins: collections.Counter[str] = collections.Counter()
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
        """Directories, policy and the registries.conf skopeo reads (idempotent, sync)."""
        for d in (self.base, self.tmp, self.run, self.skopeo.env.home):
            os.makedirs(d, mode=0o700, exist_ok=True)
        self.blobs.ensure()
        os.makedirs(self.snapshots.root, mode=0o700, exist_ok=True)
        self.snapshots.ensure()
        with open(self.skopeo.env.policy, "w", encoding="utf-8") as f:
            json.dump(POLICY, f)
        try:
            self._conf = registries.load(self.cfg.registries_conf)
            self._conf_error = None
        except registries.RegistriesConfError as e:
            self._conf = registries.RegistriesConf()
            self._conf_error = str(e)
            self.logger.error("registries.conf unusable; pulls will fail", error=str(e))
        text = registries.render(self._conf, self.cfg.mirrors, self.cfg.insecure_registries)
        registries.write_rendered(self.skopeo.env.registries_conf, text)
        self._ready = True

    async def reconcile(self) -> None:
        """At daemon start: remove what an interrupted pull or remove left, check records."""
        await asyncio.to_thread(self._setup)
        removed = await asyncio.to_thread(self._clean_temp)
        dropped = []
        for img in self.catalog.images():
            missing = [c for c in img.chain_ids if not self.snapshots.exists(c)]
            if missing:
                await self.store.images.delete(img.to_record())
                self.catalog.remove(img.id)
                dropped.append(img.id)
                self.logger.warning("image lost its snapshots; record dropped",
                                    image=img.id, missing=missing)
        freed = await self._gc(None)
        self.logger.info("images reconciled", images=len(self.catalog), temp_removed=removed,
                         dropped=dropped, gc=freed)

    def _clean_temp(self) -> int:
        n = 0
        for d in (self.tmp, self.auth_dir, self.skopeo.env.home):
            with contextlib.suppress(FileNotFoundError):
                for name in os.listdir(d):
                    p = os.path.join(d, name)
                    if os.path.isdir(p) and not os.path.islink(p):
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(p)
                    n += 1
        n += len(self.snapshots.remove_tmp())
        stray = self.blobs.stray_files()
        self.blobs.remove_stray()
        return n + len(stray)

    async def close(self) -> None:
        """At shutdown, before the store closes: stop pulls under way (skopeo killed, temp
        files removed); their callers get CANCELLED and the next start finds nothing half."""
        await self._flights.cancel_all()
        await self._fetches.cancel_all()

    # --- garbage -------------------------------------------------------------------------
    def _referenced(self) -> set[str]:
        refs: set[str] = set(self._pins)
        for img in self.catalog.images():
            refs |= img.blobs()
            refs |= set(img.chain_ids)
        return refs

    async def _pin(self, keys: Iterable[str]) -> list[str]:
        keys = list(keys)
        async with self._gc_lock:
            self._pins.update(keys)
        return keys

    def _unpin(self, keys: Iterable[str]) -> None:
        self._pins.subtract(keys)
        self._pins += collections.Counter()  # drop zero counts

    async def _gc(self, candidates: set[str] | None) -> dict[str, int]:
        """Delete blobs and snapshots (of ``candidates``, or all) that nothing references."""
        async with self._gc_lock:
            refs = self._referenced()

            def sweep() -> dict[str, int]:
                blobs = self.blobs.digests() if candidates is None else candidates
                snaps = self.snapshots.chain_ids() if candidates is None else candidates
                freed = {"blobs": 0, "bytes": 0, "snapshots": 0}
                for d in blobs:
                    if d and d not in refs and self._is_blob(d):
                        freed["bytes"] += self.blobs.delete(d)
                        freed["blobs"] += 1
                for c in snaps:
                    if c and c not in refs and self.snapshots.exists(c):
                        self.snapshots.delete(c)
                        freed["snapshots"] += 1
                return freed

            freed = await asyncio.to_thread(sweep)
        if freed["blobs"] or freed["snapshots"]:
            self._fsinfo = None
            self.logger.debug("image gc", **freed)
        return freed

    def _is_blob(self, digest: str) -> bool:
        try:
            return self.blobs.exists(digest)
        except BlobError:
            return False

    # --- lookups (memory only) -----------------------------------------------------------
    def _candidates(self, text: str) -> list[Reference]:
        return registries.candidates(self._conf, parse_name(text))

    def resolve(self, spec: str) -> tuple[Image | None, str]:
        """The image ``spec`` names (id, tag, digest reference, id prefix) and how it named it:
        "id", "tag" or "digest"."""
        if is_image_id(spec):
            return self.catalog.get(normalize_id(spec)), "id"
        try:
            cands = self._candidates(spec)
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

    def status(self, spec: str) -> pb.Image | None:
        img = self.get(spec)
        return self.catalog.message(img.id) if img is not None else None

    def list_images(self, spec: str = "") -> list[pb.Image]:
        if not spec:
            return self.catalog.messages()
        msg = self.status(spec)
        return [msg] if msg is not None else []

    def image_config(self, image_id: str) -> ImageConfig:
        img = self.get(image_id)
        if img is None:
            raise errors.NotFound(f"image {image_id} not found")
        return img.config

    def verbose_info(self, img: Image) -> dict[str, str]:
        """ImageStatus verbose: the image config and manifest as stored (small blob reads)."""
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
        creds = creds or authmod.Credentials()
        started = time.monotonic()
        outcome = "success"
        try:
            if not self._ready:
                await asyncio.to_thread(self._setup)
            if self._conf_error:
                raise errors.FailedPrecondition(f"pull {image}: {self._conf_error}")
            try:
                cands = self._candidates(image)
            except InvalidReference as e:
                raise errors.InvalidArgument(f"pull {image!r}: invalid image reference: {e}") \
                    from None
            if not cands:
                raise errors.InvalidArgument(
                    f"pull {image}: a short name, and {self._conf.path or 'registries.conf'} "
                    "has no alias for it and no unqualified-search-registries"
                )
            key = (tuple(str(c) for c in cands), creds.fingerprint())
            image_id, shared = await self._flights.do(
                key, lambda: self._pull_candidates(image, cands, creds)
            )
            if shared:
                metrics.PULLS_COALESCED.inc()
            return image_id
        except errors.TetherError as e:
            outcome = type(e).__name__.lower()
            raise
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except BaseException:
            outcome = "internal"
            raise
        finally:
            metrics.PULLS.labels(outcome).inc()
            metrics.PULL_DURATION.observe(time.monotonic() - started)

    async def _pull_candidates(
        self, image: str, cands: list[Reference], creds: authmod.Credentials
    ) -> str:
        failures: list[errors.TetherError] = []
        for ref in cands:
            try:
                return await self._pull_ref(image, ref, creds)
            except (errors.NotFound, errors.Unavailable, errors.Unauthenticated,
                    errors.PermissionDenied) as e:
                if len(cands) == 1:
                    raise
                failures.append(e)
                self.logger.info("not pulled from this registry", image=image, ref=str(ref),
                                 error=e.message)
        # the most telling failure: anything but "not found" first
        failures.sort(key=lambda e: isinstance(e, errors.NotFound))
        first = failures[0]
        raise type(first)(
            f"pull {image}: no registry could provide it (tried "
            f"{', '.join(str(c) for c in cands)}): {first.message}",
            detail=first.detail,
        )

    def _auth_content(self, ref: Reference, creds: authmod.Credentials) -> dict[str, Any]:
        try:
            global_auths = authmod.load_auth_file(self.cfg.auth_file)
            return authmod.build(ref.domain, creds, global_auths)
        except authmod.AuthError as e:
            raise errors.InvalidArgument(f"pull {ref}: {e}") from None

    async def _skopeo(self, image: str, coro: Any) -> Any:
        try:
            return await coro
        except SkopeoFailure as e:
            raise e.kind(f"pull {image}: {e.text}", detail=e.stderr) from None
        except NoProgress as e:
            raise errors.DeadlineExceeded(
                f"pull {image}: no progress for {e.seconds:g}s "
                "(images.pull_progress_timeout_seconds); cancelled"
            ) from None

    async def _pull_ref(self, image: str, ref: Reference, creds: authmod.Credentials) -> str:
        timeout = self.cfg.pull_progress_timeout_seconds
        with authmod.auth_file(self.auth_dir, self._auth_content(ref, creds)) as af:
            raw = await self._skopeo(image, self.skopeo.inspect_raw(str(ref), af, timeout))
            top = digest_of(raw)
            if ref.digest and top != ref.digest:
                raise errors.Internal(f"pull {image}: registry sent a manifest with digest "
                                      f"{top}, not {ref.digest}")
            try:
                if kind(raw) == "index":
                    entry = select_platform(Index.parse(raw), self.platform)
                    if entry is None:
                        raise errors.NotFound(
                            f"pull {image}: no image for platform {self.platform} in its index"
                        )
                    mdigest = entry.digest
                    have = self.catalog.by_manifest(mdigest)
                    if have is None:
                        raw = await self._skopeo(image, self.skopeo.inspect_raw(
                            str(ref.with_digest(mdigest)), af, timeout))
                        if digest_of(raw) != mdigest:
                            raise errors.Internal(f"pull {image}: platform manifest digest "
                                                  "mismatch")
                else:
                    mdigest = top
                    have = self.catalog.by_manifest(mdigest)
                if have is not None and self._complete(have):
                    metrics.LAYER_REUSE.inc(len(have.layers))
                    return await self._name(have.id, ref, top)
                manifest = Manifest.parse(raw)
            except ManifestError as e:
                raise errors.InvalidArgument(f"pull {image}: {e}") from None
            image_id, _ = await self._fetches.do(
                mdigest, lambda: self._fetch(image, ref, top, mdigest, manifest, af)
            )
        return await self._name(image_id, ref, top)

    def _complete(self, img: Image) -> bool:
        return all(self.snapshots.exists(c) for c in img.chain_ids)

    async def _fetch(
        self, image: str, ref: Reference, top: str, mdigest: str, manifest: Manifest, af: str
    ) -> str:
        want = {manifest.config.digest, *(x.digest for x in manifest.layers)}
        pins = await self._pin(want)
        failed = True
        layout = await asyncio.to_thread(tempfile.mkdtemp, prefix="pull-", dir=self.tmp)
        try:
            present = {d for d in want if self.blobs.exists(d)}
            await self._skopeo(image, self.skopeo.copy(
                str(ref.with_digest(mdigest)), layout, self.blobs.root, af,
                self.cfg.pull_progress_timeout_seconds,
            ))
            stored_digest, stored, cfg_blob = await asyncio.to_thread(
                self._read_layout, image, layout, manifest
            )
            pins += await self._pin([stored_digest, stored.config.digest])
            downloaded = sum(self.blobs.size(d) for d in want - present)
            metrics.PULL_BYTES.inc(downloaded)
            metrics.LAYER_REUSE.inc(sum(1 for x in manifest.layers if x.digest in present))
            cids = chain_ids(cfg_blob.diff_ids)
            pins += await self._pin(cids)
            layers = []
            for i, (desc, diff_id, cid) in enumerate(
                zip(manifest.layers, cfg_blob.diff_ids, cids, strict=True)
            ):
                if not self.snapshots.exists(cid):
                    await self._unpack(image, i, len(cids), desc.digest, diff_id, cid)
                layers.append(Layer(desc.digest, desc.media_type, desc.size, diff_id, cid))
            img = Image(
                id=manifest.config.digest,
                size=manifest.config.size + sum(x.size for x in manifest.layers),
                created_at=time.time_ns(),
                manifest_digest=mdigest,
                manifest_media_type=manifest.media_type,
                stored_manifest=stored_digest,
                config_blob=stored.config.digest,
                layers=tuple(layers),
                config=cfg_blob.config,
                platform=str(self.platform),
            )
            await self._commit(img, ref, top)
            self.logger.info("image pulled", image=image, id=img.id, layers=len(layers),
                             downloaded_bytes=downloaded)
            failed = False
            return img.id
        finally:
            await asyncio.to_thread(shutil.rmtree, layout, True)
            async with self._gc_lock:
                self._unpin(pins)
            if failed:
                await self._gc(set(pins))

    def _read_layout(
        self, image: str, layout: str, manifest: Manifest
    ) -> tuple[str, Manifest, ConfigBlob]:
        try:
            with open(os.path.join(layout, "index.json"), "rb") as f:
                index = Index.parse(f.read())
            if len(index.manifests) != 1:
                raise ManifestError("skopeo's layout does not hold exactly one manifest")
            stored_digest = index.manifests[0].digest
            stored = Manifest.parse(self.blobs.read_verified(stored_digest))
            if [x.digest for x in stored.layers] != [x.digest for x in manifest.layers]:
                raise ManifestError("stored manifest lists other layers than the registry's")
            cfg = ConfigBlob.parse(self.blobs.read_verified(stored.config.digest))
        except (OSError, BlobError, ManifestError) as e:
            raise errors.Internal(f"pull {image}: {e}") from None
        if len(cfg.diff_ids) != len(manifest.layers):
            raise errors.InvalidArgument(
                f"pull {image}: config has {len(cfg.diff_ids)} diff_ids for "
                f"{len(manifest.layers)} layers"
            )
        return stored_digest, stored, cfg

    async def _unpack(
        self, image: str, i: int, n: int, digest: str, diff_id: str, cid: str
    ) -> None:
        def work() -> None:
            tmp = self.snapshots.new_tmp(cid)
            try:
                unpack(self.blobs.path(digest), os.path.join(tmp, "fs"), diff_id)
                self.snapshots.commit(tmp, cid)
            except BaseException:
                self.snapshots.discard(tmp)
                raise

        try:
            await asyncio.to_thread(work)
        except UnsafeEntry as e:
            raise errors.InvalidArgument(
                f"pull {image}: layer {digest} ({i + 1}/{n}): unsafe {e}"
            ) from None
        except LayerError as e:
            raise errors.InvalidArgument(
                f"pull {image}: layer {digest} ({i + 1}/{n}): {e}"
            ) from None

    # --- names -----------------------------------------------------------------------------
    async def _commit(self, img: Image, ref: Reference, top: str) -> None:
        async with self._meta_lock:
            await self._write_names(img, ref, top)
        self._fsinfo = None

    async def _name(self, image_id: str, ref: Reference, top: str) -> str:
        async with self._meta_lock:
            img = self.catalog.get(image_id)
            if img is None:
                raise errors.Unavailable(f"pull {ref}: image {image_id} was removed meanwhile")
            await self._write_names(img, ref, top)
        return image_id

    async def _write_names(self, img: Image, ref: Reference, top: str) -> None:
        """Give ``img`` the names of ``ref``; take the tag from the image that had it."""
        tag = ref.tagged() if not ref.digest else None
        new = add_name(img, tag, f"{ref.name}@{top}")
        writes: list[Any] = []
        others: list[Image] = []
        if tag is not None:
            holder = self.catalog.by_name(tag)
            if holder is not None and holder.id != img.id:
                others.append(drop_tag(holder, tag))
        if new == self.catalog.get(img.id) and not others:
            return
        for x in (new, *others):
            writes.append((self.store.images, x.to_record(), False))
        await self.store.write(writes)
        for x in (new, *others):
            self.catalog.put(x)

    # --- remove ----------------------------------------------------------------------------
    async def remove(self, spec: str) -> None:
        async with self._meta_lock:
            img, how = self.resolve(spec)
            if img is None:
                return
            if how == "tag" and len(img.repo_tags) > 1:
                tag = next(str(c) for c in self._candidates(spec)
                           if str(c) in img.repo_tags)
                left = drop_tag(img, tag)
                await self.store.images.put(left.to_record())
                self.catalog.put(left)
                self.logger.info("image untagged", image=img.id, tag=tag)
                return
            for c in self.store.containers.list():
                if c.image_ref == img.id or c.image == img.id or c.image in img.names():
                    raise errors.FailedPrecondition(
                        f"image {spec} ({img.id}) is in use by container {c.id}"
                        + (f" ({c.name})" if c.name else "")
                    )
            await self.store.images.delete(img.to_record())
            self.catalog.remove(img.id)
        self.logger.info("image removed", image=img.id, tags=list(img.repo_tags))
        await self._gc(img.blobs() | set(img.chain_ids))
        self._fsinfo = None

    # --- filesystem usage -------------------------------------------------------------------
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
    async def mount_rootfs(self, image_id: str, container_dir: str) -> str:
        """Overlay of the image's layers at ``container_dir/rootfs``; returns that path."""
        img = self.get(image_id)
        if img is None:
            raise errors.NotFound(f"image {image_id} not found")
        missing = [c for c in img.chain_ids if not self.snapshots.exists(c)]
        if missing:
            raise errors.FailedPrecondition(
                f"image {img.id}: snapshots missing ({', '.join(missing)}); pull it again"
            )
        lowers = [self.snapshots.rel_fs(c) for c in reversed(img.chain_ids)] or [EMPTY]
        return await mount_overlay(self.snapshots.root, lowers, container_dir)

    async def unmount_rootfs(self, container_dir: str) -> None:
        await asyncio.to_thread(unmount_overlay, container_dir)
