"""The image's files as a pod with a user namespace sees them, where idmapped mounts cannot be
had (a kernel before 5.19, or a file system without idmap support): copies of its layer
snapshots with every owner shifted by the pod's mappings, kept per mapping under
``<snapshots>/shifted/<key>/<chain id hex>/fs`` and shared by the containers of the pods that
map alike. They go when the last container that uses them goes.

A copy is ``cp -a`` (hard links, xattrs such as overlayfs's opaque marks, device nodes and
whiteouts kept; reflinks where the file system has them), then each inode's owner shifted
once. chown clears set-id bits and file capabilities, so both are put back; a file
capability is rewritten in the v3 form whose root id is the pod's root, as the kernel wants
for a capability to count inside a user namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import glob
import os
import secrets
import shutil
import stat
import struct
import subprocess
from dataclasses import dataclass

from podsandbox.types import IDMapping
from shim import errors

SHIFTED = "shifted"
OVERFLOW_ID = 65534  # what an unmapped id looks like inside a user namespace
_CAPS = "security.capability"
_CAP_V2, _CAP_V3 = 0x02000000, 0x03000000
_CAP_REVISION_MASK, _CAP_FLAGS_EFFECTIVE = 0xFF000000, 0x000001


@dataclass(frozen=True)
class RootfsIds:
    """How a container in a user namespace gets the image's files as its own: idmapped
    mounts through the pinned namespace ``userns``, or (``copy``) shifted copies."""

    userns: str
    uids: tuple[IDMapping, ...]
    gids: tuple[IDMapping, ...]
    copy: bool = False

    def owner(self) -> tuple[int, int]:
        """The node's uid and gid of the namespace's root."""
        return shift_id(0, self.uids), shift_id(0, self.gids)

    def key(self) -> str:
        """The directory of this mapping's copies (the same for pods that map alike)."""
        def part(maps: tuple[IDMapping, ...]) -> str:
            return "_".join(f"{m.container_id}-{m.host_id}-{m.length}" for m in maps)
        return f"u{part(self.uids)}.g{part(self.gids)}"


def shift_id(i: int, maps: tuple[IDMapping, ...]) -> int:
    """The node's id that id ``i`` of the namespace is. An unmapped one becomes the
    namespace's nobody, as an idmapped mount would show it (unchanged if that is unmapped
    too)."""
    for want in (i, OVERFLOW_ID):
        for m in maps:
            if m.covers(want):
                return m.host_id + want - m.container_id
    return i


def shifted_caps(value: bytes, root: int) -> bytes:
    """A ``security.capability`` value (v2 or v3) as v3 with ``root`` as its root id."""
    if len(value) < 20:
        return value
    magic = struct.unpack_from("<I", value)[0]
    if magic & _CAP_REVISION_MASK not in (_CAP_V2, _CAP_V3):
        return value
    flags = magic & _CAP_FLAGS_EFFECTIVE
    return struct.pack("<I", _CAP_V3 | flags) + value[4:20] + struct.pack("<I", root)


def shift_tree(top: str, ids: RootfsIds) -> None:
    """Shift the owner of everything under ``top`` (each inode once: hard links)."""
    root_uid = ids.owner()[0]
    seen: set[int] = set()

    def one(path: str) -> None:
        st = os.lstat(path)
        if st.st_ino in seen:
            return
        seen.add(st.st_ino)
        caps = None
        if stat.S_ISREG(st.st_mode):
            with contextlib.suppress(OSError):
                caps = os.getxattr(path, _CAPS, follow_symlinks=False)
        os.chown(path, shift_id(st.st_uid, ids.uids), shift_id(st.st_gid, ids.gids),
                 follow_symlinks=False)
        if not stat.S_ISLNK(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
            os.chmod(path, stat.S_IMODE(st.st_mode))
        if caps is not None:
            os.setxattr(path, _CAPS, shifted_caps(caps, root_uid), follow_symlinks=False)

    one(top)
    for base, dirs, files in os.walk(top):
        for name in (*dirs, *files):
            one(os.path.join(base, name))


class ShiftedCopies:
    """The shifted copies under ``<snapshot root>/shifted``; lower dirs are named relative
    to the snapshot root, like the snapshots themselves."""

    def __init__(self, snapshot_root: str) -> None:
        self.snapshot_root = snapshot_root
        self.root = os.path.join(snapshot_root, SHIFTED)
        self._flights: dict[str, asyncio.Future[None]] = {}

    async def lowers(self, lowers: list[str], ids: RootfsIds) -> list[str]:
        """The shifted copies of ``lowers`` (relative snapshot dirs), made where missing."""
        out = []
        for rel in lowers:
            shifted = f"{SHIFTED}/{ids.key()}/{rel}"
            await self._ensure(rel, shifted, ids)
            out.append(shifted)
        return out

    async def _ensure(self, rel: str, shifted: str, ids: RootfsIds) -> None:
        target = os.path.join(self.snapshot_root, shifted)
        if os.path.isdir(target):
            return
        flight = self._flights.get(target)
        if flight is None:  # one copy per layer and mapping at a time; the others wait
            flight = asyncio.ensure_future(asyncio.to_thread(
                self._copy, os.path.join(self.snapshot_root, rel), target, ids))
            self._flights[target] = flight

            def done(f: asyncio.Future[None]) -> None:
                self._flights.pop(target, None)
                if not f.cancelled():
                    f.exception()  # retrieved, even when every waiter went away

            flight.add_done_callback(done)
        await asyncio.shield(flight)

    @staticmethod
    def _copy(source: str, target: str, ids: RootfsIds) -> None:
        """A shifted copy of ``source`` at ``target``: made beside it, then renamed in, so a
        copy that exists is whole."""
        parent = os.path.dirname(target)
        os.makedirs(parent, mode=0o700, exist_ok=True)
        tmp = f"{target}.tmp-{secrets.token_hex(4)}"
        try:
            res = subprocess.run(["cp", "-a", "--reflink=auto", "--", source, tmp],
                                 capture_output=True, text=True, check=False)
            if res.returncode != 0:
                raise errors.Internal(f"copying layer {source} for a user namespace: "
                                      f"{errors.trim(res.stderr)}", detail=res.stderr)
            shift_tree(tmp, ids)
            os.rename(tmp, target)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise errors.ResourceExhausted(
                    f"no space left for a shifted copy of layer {source}") from None
            raise errors.Internal(f"shifting layer {source}: {e}") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def drop(self, key: str) -> None:
        """Remove a mapping's copies (renamed out of the way first)."""
        path = os.path.join(self.root, key)
        if not os.path.isdir(path):
            return
        doomed = f"{path}.tmp-rm-{secrets.token_hex(4)}"
        with contextlib.suppress(FileNotFoundError):
            os.rename(path, doomed)
            shutil.rmtree(doomed, ignore_errors=True)

    def keys(self) -> set[str]:
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return set()
        return {n for n in names if ".tmp-" not in n}

    def remove_tmp(self) -> int:
        """Copies and drops a crash interrupted (``<key>.tmp-rm-*``, ``<key>/<layer>.tmp-*``,
        ``<key>/<hex>/fs.tmp-*``): at start, before any copy is made."""
        gone = 0
        for pattern in ("*.tmp-*", "*/*.tmp-*", "*/*/*.tmp-*"):
            for path in glob.glob(os.path.join(glob.escape(self.root), pattern)):
                shutil.rmtree(path, ignore_errors=True)
                gone += 1
        return gone
