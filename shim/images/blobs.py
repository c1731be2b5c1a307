"""The content-addressed blob directory: ``<root>/images/blobs/sha256/<hex>``.

Blobs arrive through a temp file renamed into place once size and digest are checked (a
download in the images tmp dir, same filesystem; a small blob already in memory through
``atomic_write``), so a blob path always holds exactly its content. Tether
reads manifests and configs back (verifying their digests) and deletes blobs no image
references any more. Synchronous: call from a worker thread for anything large.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from typing import Protocol

from cni.fileio import atomic_write

_HEX = frozenset("0123456789abcdef")


class BlobError(Exception):
    pass


class Readable(Protocol):
    """A byte source: a registry response, a file, a Download."""

    def read(self, n: int = -1, /) -> bytes: ...


def _hex(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or not set(hexpart) <= _HEX:
        raise BlobError(f"unsupported digest {digest!r}")
    return hexpart


class BlobStore:
    def __init__(self, root: str) -> None:
        self.root = root
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

    def remove_stray(self) -> int:
        """Remove :meth:`stray_files`; how many there were."""
        stray = self.stray_files()
        for p in stray:
            with contextlib.suppress(OSError):
                os.unlink(p)
        return len(stray)

    def write(self, digest: str, data: bytes) -> None:
        """Store a small blob already checked against ``digest``."""
        atomic_write(self.path(digest), data, 0o600)  # a crash leaves a stray file at most


class Download:
    """A blob as it streams in: ``read`` passes the bytes on while hashing them and writing
    them to a temp file; :meth:`commit` checks size and digest, then renames it into the
    store. Without commit, :meth:`close` removes the temp file."""

    def __init__(self, store: BlobStore, digest: str, size: int, tmp_dir: str) -> None:
        _hex(digest)
        self.store = store
        self.digest = digest
        self.size = size
        self.count = 0
        self.src: Readable | None = None  # set once the registry answers
        self._hash = hashlib.sha256()
        fd, self._tmp = tempfile.mkstemp(prefix="blob-", dir=tmp_dir)
        self._file = os.fdopen(fd, "wb")  # buffered: write() writes all of it or raises

    def read(self, n: int = -1, /) -> bytes:
        assert self.src is not None
        data = self.src.read(n)
        if data:
            self.count += len(data)
            if self.count > self.size:
                raise BlobError(f"blob {self.digest}: more than the {self.size} bytes "
                                "its descriptor says")
            self._hash.update(data)
            self._file.write(data)
        return data

    def commit(self) -> None:
        """Read what is left, check the blob, move it into the store."""
        while self.read(1 << 20):
            pass
        if self.count != self.size:
            raise BlobError(f"blob {self.digest}: {self.count} bytes, its descriptor says "
                            f"{self.size}")
        got = "sha256:" + self._hash.hexdigest()
        if got != self.digest:
            raise BlobError(f"blob {self.digest}: digest did not match (got {got})")
        self._file.close()
        os.replace(self._tmp, self.store.path(self.digest))
        self._tmp = ""

    def close(self) -> None:
        self._file.close()
        if self._tmp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)
