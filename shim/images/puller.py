"""Pulls. Resolve the name (aliases, search registries) → the endpoints registries.conf gives
(mirrors, then the registry) → the manifest or index from the first endpoint that has it (its
digest is the repo digest) → pick the node's platform → the image config → every missing layer
streamed from the registry straight into its snapshot (blob digest, size and diff_id checked on
the way; up to ``images.max_concurrent_downloads`` layers at once) → one store transaction
makes the image visible with its names. Concurrent pulls of one image share the work (single
flight, per name and again per manifest digest, and per layer across images).

What a pull is about to use is pinned in the collector, so a concurrent collection keeps it;
a failed pull collects what it leaves.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from shim import errors, log, tracing
from shim.config import ImagesConfig
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
from shim.images.gc import Collector
from shim.images.manifest import (
    ConfigBlob,
    Descriptor,
    Index,
    Manifest,
    ManifestError,
    chain_ids,
    digest_of,
    kind,
    node_platform,
    select_platform,
)
from shim.images.model import Image, Layer
from shim.images.names import Names
from shim.images.reference import InvalidReference, Reference, parse_name
from shim.images.singleflight import SingleFlight
from shim.images.snapshots import SnapshotStore
from shim.images.unpack import LayerError, UnsafeEntry, unpack

CONFIG_LIMIT = 8 << 20
T = TypeVar("T")


class Puller:
    def __init__(
        self, cfg: ImagesConfig, catalog: Catalog, blobs: BlobStore, snapshots: SnapshotStore,
        tmp: str, names: Names, collector: Collector, setup: Callable[[], Awaitable[None]],
    ) -> None:
        self.cfg = cfg
        self.catalog = catalog
        self.blobs = blobs
        self.snapshots = snapshots
        self.tmp = tmp  # blobs while they download
        self.names = names
        self.collector = collector
        self._setup = setup  # the image dirs, made once (a pull may come before reconcile)
        self.logger = log.get("images")
        self.platform = node_platform()
        self.client = Client(cfg.certs_dirs)
        # Layer downloads+unpacks: their own threads, so pulls never starve the default pool.
        self._layer_pool = concurrent.futures.ThreadPoolExecutor(
            cfg.max_concurrent_downloads, thread_name_prefix="layer")
        self._layer_slots = asyncio.Semaphore(cfg.max_concurrent_downloads)
        self.conf = registries.RegistriesConf()
        self._regs = endpointsmod.compile(self.conf)
        self._conf_error: str | None = None
        self._flights: SingleFlight[str] = SingleFlight()
        self._fetches: SingleFlight[str] = SingleFlight()
        # Images pulled at once that share a layer (a common base) fetch it once.
        self._layer_flights: SingleFlight[int] = SingleFlight()

    # --- registries config ------------------------------------------------------------------
    def load_registries(self) -> None:
        try:
            self.conf = registries.load(self.cfg.registries_conf,
                                        self.cfg.registries_conf_dir)
            self._regs = endpointsmod.compile(self.conf, self.cfg.mirrors,
                                              self.cfg.insecure_registries)
            self._conf_error = None
        except registries.RegistriesConfError as e:
            self.conf = registries.RegistriesConf()
            self._conf_error = str(e)
            self.logger.error("registries config unusable; pulls will fail", error=str(e))

    def reload(self, cfg: ImagesConfig) -> bool:
        """New ``[images]`` keys (``max_concurrent_downloads`` as before: it sized the pool)
        and registries.conf read again; True if the registries config changed."""
        self.cfg = cfg
        self.client = Client(cfg.certs_dirs)  # forgets learnt schemes, cached TLS
        before = (self.conf, self._regs, self._conf_error)
        self.load_registries()
        return (self.conf, self._regs, self._conf_error) != before

    def candidates(self, text: str) -> list[Reference]:
        """The references a name stands for (short names: aliases, search registries)."""
        return registries.candidates(self.conf, parse_name(text))

    async def close(self) -> None:
        """Stop pulls under way (connections aborted, temp files removed); their callers get
        CANCELLED."""
        await self._flights.cancel_all()
        await self._fetches.cancel_all()
        await self._layer_flights.cancel_all()
        self._layer_pool.shutdown(wait=False)

    # --- pull ------------------------------------------------------------------------------
    async def pull(self, image: str, creds: authmod.Credentials | None = None) -> str:
        """Pull ``image``; returns the image id (config digest)."""
        creds = creds or authmod.Credentials()
        started = time.monotonic()
        outcome = "success"
        try:
            await self._setup()
            if self._conf_error:
                raise errors.FailedPrecondition(f"pull {image}: {self._conf_error}")
            try:
                cands = self.candidates(image)
            except InvalidReference as e:
                raise errors.InvalidArgument(f"pull {image!r}: invalid image reference: {e}") \
                    from None
            if not cands:
                raise errors.InvalidArgument(
                    f"pull {image}: a short name, and {self.conf.path or 'registries.conf'} "
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
                    return await self.names.name(have.id, ref, top)
                manifest = Manifest.parse(raw)
            except ManifestError as e:
                raise errors.InvalidArgument(f"pull {image}: {e}") from None
            image_id, _ = await self._fetches.do(
                mdigest, lambda: self._fetch(image, session, ref, top, mdigest, manifest, raw)
            )
        finally:
            session.close()
        return await self.names.name(image_id, ref, top)

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
        pins = await self.collector.pin(want)
        failed = True
        try:
            cfg_blob = await self._config(image, session, manifest.config, mdigest, raw)
            if len(cfg_blob.diff_ids) != len(manifest.layers):
                raise errors.InvalidArgument(
                    f"pull {image}: config has {len(cfg_blob.diff_ids)} diff_ids for "
                    f"{len(manifest.layers)} layers"
                )
            cids = chain_ids(cfg_blob.diff_ids)
            pins += await self.collector.pin(cids)
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
            await self.names.commit(img, ref, top)
            self.logger.info("image pulled", image=image, id=img.id, layers=len(layers),
                             downloaded_bytes=downloaded, endpoint=session.endpoint.name)
            failed = False
            return img.id
        finally:
            await self.collector.unpin(pins)
            if failed:
                await self.collector.collect(set(pins))

    async def _config(self, image: str, session: Session, desc: Descriptor, mdigest: str,
                      raw: bytes) -> ConfigBlob:
        """The image config (from the store when present), and the manifest stored with it."""
        if desc.size > CONFIG_LIMIT:
            raise errors.InvalidArgument(f"pull {image}: image config of {desc.size} bytes")

        def local() -> bytes | None:
            self.blobs.write(mdigest, raw)
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
