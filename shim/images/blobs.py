"""The shared content-addressed blob directory: ``<root>/images/blobs/sha256/<hex>``.

skopeo writes into it (``--dest-shared-blob-dir``); Tether reads manifests and configs back
(verifying their digests) and deletes blobs no image references any more. Synchronous: call
from a worker thread for anything large.
"""

from __future__ import annotations

import contextlib
import hashlib
import os

_HEX = frozenset("0123456789abcdef")


class BlobError(Exception):
    pass


def _hex(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or not set(hexpart) <= _HEX:
        raise BlobError(f"unsupported digest {digest!r}")
    return hexpart


class BlobStore:
    def __init__(self, root: str) -> None:
        self.root = root  # the shared blob dir skopeo gets
        self.dir = os.path.join(root, "sha256")

    def ensure(self) -> None:
        os.makedirs(self.dir, mode=0o700, exist_ok=True)

    def path(self, digest: str) -> str:
        return os.path.join(self.dir, _hex(digest))

    def exists(self, digest: str) -> bool:
        return os.path.isfile(self.path(digest))

    def size(self, digest: str) -> int:
        try:
            return os.stat(self.path(digest)).st_size
        except FileNotFoundError:
            return 0

    def read_verified(self, digest: str, limit: int = 8 << 20) -> bytes:
        """A small blob (manifest, config), checked against its digest."""
        try:
            with open(self.path(digest), "rb") as f:
                data = f.read(limit + 1)
        except FileNotFoundError:
            raise BlobError(f"blob {digest} is missing") from None
        if len(data) > limit:
            raise BlobError(f"blob {digest} is larger than {limit} bytes")
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise BlobError(f"blob {digest} does not match its digest")
        return data

    def digests(self) -> set[str]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return set()
        return {f"sha256:{n}" for n in names if len(n) == 64 and set(n) <= _HEX}

    def stray_files(self) -> list[str]:
        """Files in the blob dir that are no blob (temp files of an interrupted write)."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return [os.path.join(self.dir, n) for n in names if not (len(n) == 64 and set(n) <= _HEX)]

    def delete(self, digest: str) -> int:
        """Remove one blob; the bytes freed (0 when it was not there)."""
        path = self.path(digest)
        try:
            size = os.stat(path).st_size
            os.unlink(path)
            return size
        except FileNotFoundError:
            return 0

    def remove_stray(self) -> None:
        for p in self.stray_files():
            with contextlib.suppress(OSError):
                os.unlink(p)
