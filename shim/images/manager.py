"""ImageManager: pull, list, status, remove, filesystem usage, and rootfs mounts for containers.

A pull: resolve the name (aliases, search registries) → the endpoints registries.conf gives
(mirrors, then the registry) → the manifest or index from the first endpoint that has it (its
digest is the repo digest) → pick the node's platform → the image config → every missing layer
streamed from the registry straight into its snapshot (blob digest, size and diff_id checked on
the way; up to ``images.max_concurrent_downloads`` layers at once) → one store transaction
makes the image visible with its names. Concurrent pulls of one image share the work (single
flight, per name and again per manifest digest).

Blobs and snapshots are not reference-counted in a table: an image's record lists them, so
what no record (and no pull under way) uses is garbage. Garbage is collected when an image
is removed, when a pull fails, and by :meth:`reconcile` at start (with everything a crash may
have left: temp blobs, temp snapshots).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import errno
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from shim import errors, log, tracing
from shim.config import Config, ImagesConfig
from shim.images import auth as authmod
from shim.images import endpoints as endpointsmod
from shim.images import metrics, registries
from shim.images.blobs import BlobError, BlobStore, Download
from shim.images.catalog import Catalog
from shim.images.distribution import (
    Cancelled,
    Client,
    Login,
    RegistryError,
    Session,
    Stalled,
)
from shim.images.fsusage import Usage, measure
from shim.images.manifest import (
    ConfigBlob,
    Descriptor,
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
from shim.images.model import Image, ImageSummary, Layer, add_name, drop_tag
from shim.images.reference import (
    InvalidReference,
    Reference,
    is_image_id,
    normalize_id,
    parse,
    parse_name,
)
from shim.images.singleflight import SingleFlight
from shim.images.snapshots import (
    EMPTY,
    SnapshotStore,
    mount_overlay,
    mount_readonly,
    unmount_all_under,
    unmount_overlay,
)
from shim.images.unpack import LayerError, UnsafeEntry, unpack
from shim.store import Store

IMAGE_VOLUMES_DIR = "imagevols"  # <container dir>/imagevols/<n>: image volume mounts
FSINFO_TTL = 5.0
CONFIG_LIMIT = 8 << 20
T = TypeVar("T")


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
        self.tmp = os.path.join(self.base, "tmp")  # blobs while they download
        self.containers_dir = containers_dir or os.path.join(root, "containers")
        self.platform = node_platform()
        self.client = Client(self.cfg.certs_dirs)
        # Layer downloads+unpacks: their own threads, so pulls never starve the default pool.
        self._layer_pool = concurrent.futures.ThreadPoolExecutor(
            self.cfg.max_concurrent_downloads, thread_name_prefix="layer")
        self._layer_slots = asyncio.Semaphore(self.cfg.max_concurrent_downloads)
        self._conf = registries.RegistriesConf()
        self._regs = endpointsmod.compile(self._conf)
        self._conf_error: str | None = None
        self._pinned_names = self._pause_names()
        self.catalog = Catalog(lambda img: bool(self._pinned_names & set(img.repo_tags)))
        for rec in store.images.list():
            self.catalog.put(Image.from_record(rec))
        self._flights: SingleFlight[str] = SingleFlight()
        self._fetches: SingleFlight[str] = SingleFlight()
        # Images pulled at once that share a layer (a common base) fetch it once.
        self._layer_flights: SingleFlight[int] = SingleFlight()
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
        """Directories and the registries config (idempotent, sync)."""
        for d in (self.base, self.tmp):
            os.makedirs(d, mode=0o700, exist_ok=True)
        self.blobs.ensure()
        os.makedirs(self.snapshots.root, mode=0o700, exist_ok=True)
        self.snapshots.ensure()
        self._load_registries()
        self._ready = True

    def reload(self, cfg: ImagesConfig) -> bool:
        """SIGHUP: take the new ``[images]`` keys (all but ``max_concurrent_downloads``, which
        sizes a thread pool: restart) and read registries.conf again, for the next pulls.
        True if the registries config (file or Tether's mirrors/insecure) changed."""
        self.cfg = dataclasses.replace(
            cfg, max_concurrent_downloads=self.cfg.max_concurrent_downloads)
        self.client = Client(self.cfg.certs_dirs)  # forgets learnt schemes, cached TLS
        pinned = self._pause_names()
        if pinned != self._pinned_names:
            self._pinned_names = pinned
            for img in self.catalog.images():
                self.catalog.put(img)  # rebuilds its CRI message with the new pinned flag
        before = (self._conf, self._regs, self._conf_error)
        self._load_registries()
        return (self._conf, self._regs, self._conf_error) != before

    def _load_registries(self) -> None:
        try:
            self._conf = registries.load(self.cfg.registries_conf,
                                         self.cfg.registries_conf_dir)
            self._regs = endpointsmod.compile(self._conf, self.cfg.mirrors,
                                              self.cfg.insecure_registries)
            self._conf_error = None
        except registries.RegistriesConfError as e:
            self._conf = registries.RegistriesConf()
            self._conf_error = str(e)
            self.logger.error("registries config unusable; pulls will fail", error=str(e))

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
        """Partial downloads (and layouts of versions that pulled with skopeo), temp
        snapshots, stray files in the blob dir."""
        n = 0
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self.tmp):
                p = os.path.join(self.tmp, name)
                if os.path.isdir(p) and not os.path.islink(p):
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(p)
                n += 1
        n += len(self.snapshots.remove_tmp())
        return n + self.blobs.remove_stray()

    async def close(self) -> None:
        """At shutdown, before the store closes: stop pulls under way (connections aborted,
        temp files removed); their callers get CANCELLED and the next start finds nothing
        half."""
        await self._flights.cancel_all()
        await self._fetches.cancel_all()
        await self._layer_flights.cancel_all()
        self._layer_pool.shutdown(wait=False)

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
                tracing.annotate(coalesced=True)  # its steps are in the other pull's trace
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

    # The blocking registry calls run in threads; a cancelled caller aborts the session's
    # connections and waits for the thread, so nothing writes after cleanup.
    async def _call(self, image: str, session: Session, fn: Callable[..., T], *args: Any,
                    pool: concurrent.futures.Executor | None = None) -> T:
        fut = asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            session.cancel()
            with contextlib.suppress(BaseException):
                await fut
            raise
        except (RegistryError, Stalled, Cancelled) as e:
            raise self._registry_error(image, e) from None

    @staticmethod
    def _registry_error(image: str, e: RegistryError | Stalled | Cancelled) -> errors.TetherError:
        if isinstance(e, RegistryError):
            return e.kind(f"pull {image}: {e.text}")
        if isinstance(e, Stalled):
            return errors.DeadlineExceeded(
                f"pull {image}: no progress for {e.seconds:g}s "
                "(images.pull_progress_timeout_seconds); cancelled")
        return errors.Unavailable(f"pull {image}: cancelled")

    async def _session(self, image: str, ref: Reference, ep: endpointsmod.Endpoint,
                       creds: authmod.Credentials) -> Session:
        def login() -> Login:  # reads the auth file, may run a credential helper
            auth_file = authmod.load_auth_file(self.cfg.auth_file)
            return authmod.login_for(ep.name, ref.domain, creds, auth_file)

        try:
            found = await asyncio.to_thread(login)
        except authmod.AuthError as e:
            raise errors.InvalidArgument(f"pull {image}: {e}") from None
        return self.client.session(ep, found, self.cfg.pull_progress_timeout_seconds)

    async def _open(self, image: str, ref: Reference,
                    creds: authmod.Credentials) -> tuple[Session, bytes]:
        """The first endpoint (mirrors first) that serves ``ref``: its session and manifest."""
        try:
            eps = endpointsmod.endpoints(self._regs, ref)
        except endpointsmod.Blocked as e:
            raise errors.PermissionDenied(f"pull {image}: {e}") from None
        except InvalidReference as e:
            raise errors.InvalidArgument(f"pull {image}: registries config: {e}") from None
        failure: errors.TetherError | None = None
        for ep in eps:
            session = await self._session(image, ref, ep, creds)
            try:
                raw = await self._manifest(image, session, ref.digest or ref.tag)
                return session, raw
            except errors.TetherError as e:
                session.close()
                failure = e
                if ep.mirror:
                    self.logger.info("mirror could not serve the image", image=image,
                                     mirror=ep.name, error=failure.message)
            except BaseException:
                session.close()
                raise
        assert failure is not None
        raise failure

    async def _pull_ref(self, image: str, ref: Reference, creds: authmod.Credentials) -> str:
        session, raw = await self._open(image, ref, creds)
        try:
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
                        raw = await self._manifest(image, session, mdigest)
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
                mdigest, lambda: self._fetch(image, session, ref, top, mdigest, manifest, raw)
            )
        finally:
            session.close()
        return await self._name(image_id, ref, top)

    async def _manifest(self, image: str, session: Session, tag_or_digest: str | None
                        ) -> bytes:
        """One manifest (or index) from the session's endpoint."""
        ep = session.endpoint
        with tracing.span("image.manifest", image=image, endpoint=ep.name, mirror=ep.mirror,
                          reference=tag_or_digest) as sp:
            raw, _ = await self._call(image, session, session.manifest, tag_or_digest)
            if sp.recording:
                sp.set(digest=digest_of(raw), kind=kind(raw))
            return raw

    def _complete(self, img: Image) -> bool:
        return all(self.snapshots.exists(c) for c in img.chain_ids)

    async def _fetch(
        self, image: str, session: Session, ref: Reference, top: str, mdigest: str,
        manifest: Manifest, raw: bytes,
    ) -> str:
        cfg_digest = manifest.config.digest
        want = {mdigest, cfg_digest, *(x.digest for x in manifest.layers)}
        pins = await self._pin(want)
        failed = True
        try:
            cfg_blob = await self._config(image, session, manifest.config, mdigest, raw)
            if len(cfg_blob.diff_ids) != len(manifest.layers):
                raise errors.InvalidArgument(
                    f"pull {image}: config has {len(cfg_blob.diff_ids)} diff_ids for "
                    f"{len(manifest.layers)} layers"
                )
            cids = chain_ids(cfg_blob.diff_ids)
            pins += await self._pin(cids)
            layers = [Layer(d.digest, d.media_type, d.size, diff_id, cid)
                      for d, diff_id, cid in zip(manifest.layers, cfg_blob.diff_ids, cids,
                                                 strict=True)]
            downloaded = await self._layers(image, session, layers)
            img = Image(
                id=cfg_digest,
                size=manifest.config.size + sum(x.size for x in manifest.layers),
                created_at=time.time_ns(),
                manifest_digest=mdigest,
                manifest_media_type=manifest.media_type,
                stored_manifest=mdigest,
                config_blob=cfg_digest,
                layers=tuple(layers),
                config=cfg_blob.config,
                platform=str(self.platform),
            )
            await self._commit(img, ref, top)
            self.logger.info("image pulled", image=image, id=img.id, layers=len(layers),
                             downloaded_bytes=downloaded, endpoint=session.endpoint.name)
            failed = False
            return img.id
        finally:
            async with self._gc_lock:
                self._unpin(pins)
            if failed:
                await self._gc(set(pins))

    async def _config(self, image: str, session: Session, desc: Descriptor, mdigest: str,
                      raw: bytes) -> ConfigBlob:
        """The image config (from the store when present), and the manifest stored with it."""
        if desc.size > CONFIG_LIMIT:
            raise errors.InvalidArgument(f"pull {image}: image config of {desc.size} bytes")

        def local() -> bytes | None:
            self.blobs.write(mdigest, raw, self.tmp)
            try:
                return self.blobs.read_verified(desc.digest, CONFIG_LIMIT)
            except BlobError:
                return None

        def fetch() -> bytes:
            self._download(session, desc.digest, desc.size)
            return self.blobs.read_verified(desc.digest, CONFIG_LIMIT)

        with tracing.span("image.config", digest=desc.digest, size=desc.size) as sp:
            data = await asyncio.to_thread(local)
            sp.set(cached=data is not None)
            if data is None:
                try:
                    data = await self._call(image, session, fetch)
                except BlobError as e:
                    raise errors.Internal(f"pull {image}: image config: {e}") from None
                metrics.PULL_BYTES.inc(len(data))
        try:
            return ConfigBlob.parse(data)
        except ManifestError as e:
            raise errors.InvalidArgument(f"pull {image}: image config: {e}") from None

    def _download(self, session: Session, digest: str, size: int,
                  consume: Callable[[Download], object] | None = None) -> None:
        """(A worker thread.) Stream a blob into the store through a temp file, checked;
        ``consume`` (the unpacker) reads it on the way."""
        download = Download(self.blobs, digest, size, self.tmp)
        try:
            with contextlib.closing(session.open_blob(digest)) as stream:
                download.src = stream
                if consume is not None:
                    consume(download)
                download.commit()
        finally:
            download.close()

    async def _layers(self, image: str, session: Session, layers: list[Layer]) -> int:
        """Fetch and unpack the layers that have no snapshot, several at once; the bytes
        downloaded. The first failure aborts the others."""
        n = len(layers)

        async def run(i: int, layer: Layer) -> int:
            async with self._layer_slots:
                # download and unpack are one stream (the layer is unpacked as it arrives)
                with tracing.span("image.layer", digest=layer.digest, size=layer.size,
                                  index=i, layers=n, media_type=layer.media_type) as sp:
                    downloaded = await self._call(image, session, self._layer, image, session,
                                                  i, n, layer, pool=self._layer_pool)
                    sp.set(downloaded_bytes=downloaded)
                    return downloaded

        async def one(i: int, layer: Layer) -> int:
            joined = self._layer_flights.running(layer.chain_id)
            try:
                downloaded, shared = await self._layer_flights.do(
                    layer.chain_id, lambda: run(i, layer))
            except errors.TetherError:
                if not joined:
                    raise
                # the other pull failed (its own cause, endpoint or credentials): our turn
                return await run(i, layer)
            return 0 if shared else downloaded

        tasks = [asyncio.ensure_future(one(i, x)) for i, x in enumerate(layers)
                 if not self.snapshots.exists(x.chain_id)]
        metrics.LAYER_REUSE.inc(n - len(tasks))
        if not tasks:
            return 0
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            if not all(t.done() for t in tasks) or any(
                    t.exception() for t in tasks if t.done() and not t.cancelled()):
                session.cancel()  # the rest stop at their next read
            await asyncio.wait(tasks)
        failures = [t.exception() for t in tasks if t.exception() is not None]
        # the cause, not the sessions cancelled because of it
        failures.sort(key=lambda e: isinstance(e, errors.Unavailable))
        if failures:
            raise failures[0]  # type: ignore[misc]
        downloaded = sum(t.result() for t in tasks)
        metrics.PULL_BYTES.inc(downloaded)
        return downloaded

    def _layer(self, image: str, session: Session, i: int, n: int, layer: Layer) -> int:
        """(A worker thread.) Stream one layer into its snapshot; returns bytes downloaded."""
        where = f"pull {image}: layer {layer.digest} ({i + 1}/{n})"
        tmp = self.snapshots.new_tmp(layer.chain_id)
        fs = os.path.join(tmp, "fs")
        try:
            if self.blobs.exists(layer.digest):
                unpack(self.blobs.path(layer.digest), fs, layer.diff_id)
                metrics.LAYER_REUSE.inc()
                downloaded = 0
            else:
                self._download(session, layer.digest, layer.size,
                               lambda blob: unpack(blob, fs, layer.diff_id))
                downloaded = layer.size
            self.snapshots.commit(tmp, layer.chain_id)
            return downloaded
        except UnsafeEntry as e:
            raise errors.InvalidArgument(f"{where}: unsafe {e}") from None
        except BlobError as e:
            raise errors.Internal(f"{where}: {e}") from None
        except LayerError as e:
            raise errors.InvalidArgument(f"{where}: {e}") from None
        except OSError as e:  # the node's side: a full disk, a read-only store
            kind = errors.ResourceExhausted if e.errno in (errno.ENOSPC, errno.EDQUOT) \
                else errors.Internal
            raise kind(f"{where}: {e.strerror or e}") from None
        finally:
            if os.path.exists(tmp):
                self.snapshots.discard(tmp)

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
        with tracing.span("store.write", record="image", image_ref=img.id,
                          names=len(new.repo_tags) + len(new.repo_digests)):
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
                if c.image_ref == img.id or c.image == img.id or c.image in img.names() \
                        or img.id in c.details.get("image_volume_ids", ()):
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
        return await mount_overlay(self.snapshots.root, self._lowers(img), container_dir)

    def _lowers(self, img: Image) -> list[str]:
        missing = [c for c in img.chain_ids if not self.snapshots.exists(c)]
        if missing:
            raise errors.FailedPrecondition(
                f"image {img.id}: snapshots missing ({', '.join(missing)}); pull it again"
            )
        return [self.snapshots.rel_fs(c) for c in reversed(img.chain_ids)] or [EMPTY]

    async def mount_image_volume(self, spec: str, target: str) -> tuple[str, str]:
        """Image ``spec`` (a reference or id, pulled already) read-only at ``target``:
        (image id, mount point)."""
        img = self.get(spec)
        if img is None:
            raise errors.NotFound(f"image {spec!r} not found (pull it first)")
        return img.id, await mount_readonly(self.snapshots.root, self._lowers(img), target)

    async def unmount_rootfs(self, container_dir: str) -> None:
        """The rootfs and the image volumes of a container."""
        def work() -> None:
            unmount_all_under(os.path.join(container_dir, IMAGE_VOLUMES_DIR))
            unmount_overlay(container_dir)
        await asyncio.to_thread(work)
