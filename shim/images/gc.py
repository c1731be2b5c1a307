"""Garbage collection of blobs and snapshots, and what a crash leaves behind.

Nothing is reference-counted in a table: an image's record lists its blobs and chain ids, and
a pull under way pins (in memory) what it is about to use, so what neither references is
garbage. ``collect`` deletes it: when an image is removed, when a pull fails, and at start.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import shutil
from collections.abc import Callable, Iterable

from shim import log
from shim.images.blobs import BlobError, BlobStore
from shim.images.catalog import Catalog
from shim.images.shifted import ShiftedCopies
from shim.images.snapshots import SnapshotStore


class Collector:
    def __init__(self, blobs: BlobStore, snapshots: SnapshotStore, catalog: Catalog,
                 on_freed: Callable[[], None]) -> None:
        self.blobs = blobs
        self.snapshots = snapshots
        self.catalog = catalog
        self._on_freed = on_freed  # disk usage changed (the fs info cache)
        self.logger = log.get("images")
        self._lock = asyncio.Lock()
        self._pins: collections.Counter[str] = collections.Counter()

    def _referenced(self) -> set[str]:
        refs: set[str] = set(self._pins)
        for img in self.catalog.images():
            refs |= img.blobs()
            refs |= set(img.chain_ids)
        return refs

    async def pin(self, keys: Iterable[str]) -> list[str]:
        """Keep ``keys`` (blob digests, chain ids) from collection until ``unpin``."""
        keys = list(keys)
        async with self._lock:
            self._pins.update(keys)
        return keys

    async def unpin(self, keys: Iterable[str]) -> None:
        async with self._lock:
            self._pins.subtract(keys)
            self._pins += collections.Counter()  # drop zero counts

    async def collect(self, candidates: set[str] | None) -> dict[str, int]:
        """Delete blobs and snapshots (of ``candidates``, or all) that nothing references."""
        async with self._lock:
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
            self._on_freed()
            self.logger.debug("image gc", **freed)
        return freed

    def _is_blob(self, digest: str) -> bool:
        try:
            return self.blobs.exists(digest)
        except BlobError:
            return False

    def clean_temp(self, tmp: str) -> int:
        """(Sync, at start.) Partial downloads in ``tmp`` (and layouts of versions that pulled
        with skopeo), temp snapshots, stray files in the blob dir; how many."""
        n = 0
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(tmp):
                p = os.path.join(tmp, name)
                if os.path.isdir(p) and not os.path.islink(p):
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(p)
                n += 1
        n += len(self.snapshots.remove_tmp())
        n += ShiftedCopies(self.snapshots.root).remove_tmp()
        return n + self.blobs.remove_stray()
