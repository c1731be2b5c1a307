"""Rootfs for containers: an image's snapshots as an overlay (the container's rootfs) or
read-only at a target (an image volume), and their unmounting. For a container in a user
namespace the snapshots are idmapped, or replaced by shifted copies (shifted.py)."""

from __future__ import annotations

import asyncio
import os

from shim import errors
from shim.images.model import Image
from shim.images.shifted import RootfsIds, ShiftedCopies
from shim.images.snapshots import (
    EMPTY,
    SnapshotStore,
    mount_overlay,
    mount_readonly,
    unmount_all_under,
    unmount_overlay,
)

IMAGE_VOLUMES_DIR = "imagevols"  # <container dir>/imagevols/<n>: image volume mounts


class Rootfs:
    def __init__(self, snapshots: SnapshotStore) -> None:
        self.snapshots = snapshots
        self.shifted = ShiftedCopies(snapshots.root)

    def lowers(self, img: Image) -> list[str]:
        """The overlay's lower dirs, top layer first (relative to the snapshot root)."""
        missing = [c for c in img.chain_ids if not self.snapshots.exists(c)]
        if missing:
            raise errors.FailedPrecondition(
                f"image {img.id}: snapshots missing ({', '.join(missing)}); pull it again"
            )
        return [self.snapshots.rel_fs(c) for c in reversed(img.chain_ids)] or [EMPTY]

    async def _lowers(self, img: Image, ids: RootfsIds | None) -> tuple[list[str], str]:
        """(lower dirs, the user namespace to idmap them with, or "")."""
        lowers = self.lowers(img)
        if ids is None:
            return lowers, ""
        if ids.copy:
            return await self.shifted.lowers(lowers, ids), ""
        return lowers, ids.userns

    async def mount(self, img: Image, container_dir: str, ids: RootfsIds | None = None) -> str:
        """Overlay of the image's layers at ``container_dir/rootfs``; returns that path.
        ``ids``: a container in a user namespace, which sees the image's files as its own."""
        lowers, idmap = await self._lowers(img, ids)
        return await mount_overlay(self.snapshots.root, lowers, container_dir, idmap,
                                   ids.owner() if ids else (0, 0))

    async def mount_volume(self, img: Image, target: str, ids: RootfsIds | None = None) -> str:
        """The image read-only at ``target``; returns the mount point."""
        lowers, idmap = await self._lowers(img, ids)
        return await mount_readonly(self.snapshots.root, lowers, target, idmap)

    async def unmount(self, container_dir: str) -> None:
        """The rootfs and the image volumes of a container."""
        def work() -> None:
            unmount_all_under(os.path.join(container_dir, IMAGE_VOLUMES_DIR))
            unmount_overlay(container_dir)
        await asyncio.to_thread(work)
