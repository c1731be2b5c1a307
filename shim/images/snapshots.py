"""Layer snapshots and the overlay mounts made of them.

Each layer is unpacked once, into ``<snapshots>/<chain id hex>/fs``: first into a temp dir
``<snapshots>/.tmp-<hex>-<random>`` that is renamed into place when complete, so a snapshot
dir that exists is whole. A container's rootfs is an overlay of its image's snapshots (top
layer first) with ``upper``/``work`` in the container's directory. Overlay options are given
relative to the snapshot dir (``mount`` runs there), which keeps the option string short
enough for ~60 layers.

For a pod with a user namespace (``idmap``: its pinned namespace) the lower dirs are an
idmapped view of the snapshot dir, shifted by the pod's mappings and attached at
``<container>/idmap/lower`` just long enough for the overlay mount to take hold of its
layers, then detached: a file the image says root owns is owned by the pod's root. The upper
and work dirs are plain, the upper one owned by the pod's root, so what the container writes
lands on disk with the node's ids of the pod (as containerd's remapped snapshots do). They
cannot be idmapped too: overlayfs makes its work dir as the mounter, the node's root, whom
the pod's mappings do not map (EOVERFLOW, and the overlay falls back to read-only).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import os
import secrets
import shutil
from collections.abc import AsyncIterator

from podsandbox import kernel
from shim import errors
from shim.images.manifest import is_digest

TMP_PREFIX = ".tmp-"
EMPTY = "empty"  # lower dir of an image without layers
MNT_DETACH = 2
# The kernel takes one page of mount options.
MAX_OPTIONS = 4000


def _hex(chain_id: str) -> str:
    """The directory name of a chain id; anything but a sha256 digest is refused, as it
    would name a path outside the snapshot root."""
    if not is_digest(chain_id):
        raise ValueError(f"not a sha256 chain id: {chain_id!r}")
    return chain_id.removeprefix("sha256:")


class SnapshotStore:
    def __init__(self, root: str) -> None:
        self.root = root

    def ensure(self) -> None:
        os.makedirs(os.path.join(self.root, EMPTY), mode=0o755, exist_ok=True)
        os.chmod(self.root, 0o700)

    def path(self, chain_id: str) -> str:
        return os.path.join(self.root, _hex(chain_id))

    def fs(self, chain_id: str) -> str:
        return os.path.join(self.path(chain_id), "fs")

    def rel_fs(self, chain_id: str) -> str:
        return f"{_hex(chain_id)}/fs"

    def exists(self, chain_id: str) -> bool:
        return os.path.isdir(self.fs(chain_id))

    def chain_ids(self) -> set[str]:
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return set()
        return {f"sha256:{n}" for n in names if is_digest(f"sha256:{n}")}

    def new_tmp(self, chain_id: str) -> str:
        """A fresh temp snapshot dir (its ``fs`` made); fill it, then :meth:`commit`."""
        tmp = os.path.join(self.root, f"{TMP_PREFIX}{_hex(chain_id)[:16]}-{secrets.token_hex(4)}")
        os.mkdir(tmp, 0o700)
        os.mkdir(os.path.join(tmp, "fs"), 0o755)
        return tmp

    def commit(self, tmp: str, chain_id: str) -> bool:
        """Rename into place; False (and ``tmp`` discarded) if another pull got there first."""
        try:
            os.rename(tmp, self.path(chain_id))
            return True
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            self.discard(tmp)
            return False

    @staticmethod
    def discard(tmp: str) -> None:
        shutil.rmtree(tmp, ignore_errors=True)

    def delete(self, chain_id: str) -> None:
        """Remove a snapshot: renamed out of the way first, so it is never seen half gone."""
        path = self.path(chain_id)
        if not os.path.isdir(path):
            return
        doomed = os.path.join(self.root, f"{TMP_PREFIX}rm-{_hex(chain_id)[:16]}-"
                                         f"{secrets.token_hex(4)}")
        try:
            os.rename(path, doomed)
        except FileNotFoundError:
            return
        shutil.rmtree(doomed, ignore_errors=True)

    def remove_tmp(self) -> list[str]:
        """Leftovers of interrupted unpacks and deletes; returns what was removed."""
        gone = []
        with contextlib.suppress(FileNotFoundError):
            for n in os.listdir(self.root):
                if n.startswith(TMP_PREFIX):
                    shutil.rmtree(os.path.join(self.root, n), ignore_errors=True)
                    gone.append(n)
        return gone


# --- overlay mounts ---------------------------------------------------------------------

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _umount(path: str, flags: int = 0) -> int:
    if _libc.umount2(os.fsencode(path), flags) == 0:
        return 0
    return ctypes.get_errno()


def overlay_options(lowers: list[str], upper: str, work: str) -> str:
    opts = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}"
    if len(opts) > MAX_OPTIONS:
        raise errors.FailedPrecondition(
            f"image has too many layers ({len(lowers)}) for one overlay mount"
        )
    return opts


IDMAP_VIEWS = "idmap"  # <container dir>/idmap/lower: while the overlay is being mounted


@contextlib.asynccontextmanager
async def _idmapped_views(views: str, sources: dict[str, str], userns: str
                          ) -> AsyncIterator[dict[str, str]]:
    """Each source dir attached, idmapped by ``userns``, at ``views/<name>``; all detached
    and removed on leaving (an overlay keeps what it took hold of)."""
    out: dict[str, str] = {}
    try:
        for name, source in sources.items():
            target = os.path.join(views, name)
            os.makedirs(target, mode=0o700, exist_ok=True)
            try:
                kernel.mount_idmapped(source, userns, target)
            except OSError as e:
                raise errors.Internal(f"idmapped mount of {source}: {e.strerror or e}") from None
            out[name] = target
        yield out
    finally:
        remove_idmap_views(views)


def remove_idmap_views(views: str) -> None:
    """Detach what ``_idmapped_views`` attached (after a crash too) and remove the dir."""
    if not os.path.isdir(views):
        return
    for p in sorted(set(mounts_under(views)), key=len, reverse=True):
        _umount(p, MNT_DETACH)
    shutil.rmtree(views, ignore_errors=True)


async def _mount(snapshot_root: str, opts: str, target: str, what: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "mount", "-t", "overlay", "overlay", "-o", opts, target,
        cwd=snapshot_root,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        text = (err or out).decode(errors="replace")
        raise errors.Internal(f"mount overlay {what} at {target}: {errors.trim(text)}",
                              detail=text)


async def mount_readonly(snapshot_root: str, lowers: list[str], target: str,
                         idmap: str = "") -> str:
    """An image's layers, read-only (an overlay of lower dirs only) at ``target``: an image
    volume. Overlay needs two lower dirs when it has no upper: the empty one makes up.
    ``idmap``: the pinned user namespace whose ids the files are shown with."""
    os.makedirs(target, mode=0o755, exist_ok=True)
    if os.path.ismount(target):
        return target
    lowers = lowers if len(lowers) > 1 else [*lowers, EMPTY]
    opts = f"ro,lowerdir={':'.join(lowers)}"
    if len(opts) > MAX_OPTIONS:
        raise errors.FailedPrecondition(
            f"image has too many layers ({len(lowers)}) for one overlay mount")
    if not idmap:
        await _mount(snapshot_root, opts, target, "image volume")
        return target
    views = target.rstrip("/") + "." + IDMAP_VIEWS
    async with _idmapped_views(views, {"lower": snapshot_root}, idmap) as v:
        await _mount(v["lower"], opts, target, "image volume")
    return target


def mounts_under(directory: str) -> list[str]:
    """Mount points at or below ``directory`` (/proc/self/mountinfo)."""
    prefix = os.path.realpath(directory)
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            p = line.split()[4].replace("\\040", " ")
            if p == prefix or p.startswith(prefix + "/"):
                points.append(p)
    return points


def unmount_all_under(directory: str) -> None:
    """Unmount every mount at or below ``directory`` (deepest first; lazily if busy)."""
    for p in sorted(set(mounts_under(directory)), key=len, reverse=True):
        err = _umount(p)
        if err == errno.EBUSY:
            err = _umount(p, MNT_DETACH)
        if err and err != errno.EINVAL:
            raise errors.Internal(f"unmount {p}: {os.strerror(err)}")


async def mount_overlay(snapshot_root: str, lowers: list[str], container_dir: str,
                        idmap: str = "", owner: tuple[int, int] = (0, 0)) -> str:
    """Mount the rootfs at ``container_dir/rootfs``; ``lowers`` relative to snapshot_root.
    ``idmap``: the pinned user namespace whose ids the image's files are shown with;
    ``owner``: the node's uid and gid of that namespace's root."""
    rootfs = os.path.join(container_dir, "rootfs")
    upper = os.path.join(container_dir, "upper")
    work = os.path.join(container_dir, "work")
    for d in (container_dir, rootfs, upper, work):
        os.makedirs(d, mode=0o755, exist_ok=True)
    if os.path.ismount(rootfs):
        return rootfs
    opts = overlay_options(lowers, upper, work)
    if owner != (0, 0):
        os.chown(upper, *owner)  # the rootfs's own "/" (an overlay shows its upper's root)
    if not idmap:
        await _mount(snapshot_root, opts, rootfs, "rootfs")
        return rootfs
    async with _idmapped_views(os.path.join(container_dir, IDMAP_VIEWS),
                               {"lower": snapshot_root}, idmap) as v:
        await _mount(v["lower"], opts, rootfs, "rootfs")
    return rootfs


def unmount_overlay(container_dir: str) -> None:
    """Unmount ``container_dir/rootfs`` (lazily if busy) and delete upper/work/rootfs."""
    remove_idmap_views(os.path.join(container_dir, IDMAP_VIEWS))
    rootfs = os.path.join(container_dir, "rootfs")
    while os.path.ismount(rootfs):
        err = _umount(rootfs)
        if err == errno.EBUSY:
            err = _umount(rootfs, MNT_DETACH)
        if err and err != errno.EINVAL:
            raise errors.Internal(f"unmount {rootfs}: {os.strerror(err)}")
        if err == errno.EINVAL:
            break
    for d in ("upper", "work"):
        shutil.rmtree(os.path.join(container_dir, d), ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(rootfs)
