"""The image table and the names in it: every write of an image record goes through here,
under one lock, so a pull naming an image and a remove of it never interleave."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from shim import errors, tracing
from shim.images.catalog import Catalog
from shim.images.model import Image, add_name, drop_tag
from shim.images.reference import Reference
from shim.store import Store


class Names:
    def __init__(self, store: Store, catalog: Catalog, on_change: Callable[[], None]) -> None:
        self.store = store
        self.catalog = catalog
        self._on_change = on_change  # an image came or went (the fs info cache)
        self.lock = asyncio.Lock()  # held by writers; ``untag``/``delete`` expect it held

    async def commit(self, img: Image, ref: Reference, top: str) -> None:
        """A pulled image becomes visible, with the names of ``ref``."""
        async with self.lock:
            await self._write_names(img, ref, top)
        self._on_change()

    async def name(self, image_id: str, ref: Reference, top: str) -> str:
        """An image present already gets the names of ``ref``."""
        async with self.lock:
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

    async def untag(self, img: Image, tag: str) -> None:
        """(``lock`` held.) ``img`` without ``tag``."""
        left = drop_tag(img, tag)
        await self.store.images.put(left.to_record())
        self.catalog.put(left)

    async def delete(self, img: Image) -> None:
        """(``lock`` held.) The record goes; its blobs and snapshots are garbage after."""
        await self.store.images.delete(img.to_record())
        self.catalog.remove(img.id)
