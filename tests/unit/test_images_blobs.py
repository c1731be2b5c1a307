"""The blob store: a blob path holds exactly its content, whatever the download did."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from shim.images.blobs import BlobError, BlobStore, Download


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    s = BlobStore(str(tmp_path / "blobs"))
    s.ensure()
    (tmp_path / "tmp").mkdir()
    return s


@pytest.fixture
def tmp(tmp_path: Path) -> str:
    return str(tmp_path / "tmp")


class Chunks:
    """A source handing out at most ``step`` bytes a read."""

    def __init__(self, data: bytes, step: int = 7) -> None:
        self._f = io.BytesIO(data)
        self.step = step

    def read(self, n: int = -1, /) -> bytes:
        return self._f.read(self.step if n < 0 else min(n, self.step))


def test_download_commit(store: BlobStore, tmp: str) -> None:
    data = os.urandom(3 << 20 | 5)
    d = digest_of(data)
    dl = Download(store, d, len(data), tmp)
    dl.src = io.BytesIO(data)
    try:
        # a consumer reads part of it on the way, commit drains the rest
        first = dl.read(1000)
        assert first == data[:1000]
        assert os.listdir(tmp)  # the temp file, not yet in the store
        assert not store.exists(d)
        dl.commit()
    finally:
        dl.close()
    assert store.exists(d)
    assert Path(store.path(d)).read_bytes() == data
    assert store.read_verified(d, limit=len(data)) == data
    assert os.listdir(tmp) == []
    assert store.stray_files() == []
    assert dl.count == len(data)


def test_download_small_reads(store: BlobStore, tmp: str) -> None:
    data = b"hello blob" * 10
    d = digest_of(data)
    dl = Download(store, d, len(data), tmp)
    dl.src = Chunks(data)
    got = b""
    while chunk := dl.read(1 << 20):
        got += chunk
    dl.commit()
    dl.close()
    assert got == data and store.read_verified(d) == data


def test_download_empty_blob(store: BlobStore, tmp: str) -> None:
    d = digest_of(b"")
    dl = Download(store, d, 0, tmp)
    dl.src = io.BytesIO(b"")
    dl.commit()
    dl.close()
    assert store.exists(d) and store.size(d) == 0


@pytest.mark.parametrize(("sent", "size", "needle"), [
    (b"tampered", 8, "digest did not match"),
    (b"too many bytes!", 8, "more than the 8 bytes"),
    (b"few", 8, "3 bytes, its descriptor says 8"),
])
def test_download_bad(store: BlobStore, tmp: str, sent: bytes, size: int, needle: str) -> None:
    d = digest_of(b"expected"[:size].ljust(size, b"x"))
    dl = Download(store, d, size, tmp)
    dl.src = Chunks(sent, step=3)
    with pytest.raises(BlobError, match=needle):
        dl.commit()
    assert not store.exists(d)
    dl.close()
    assert os.listdir(tmp) == []
    assert os.listdir(store.dir) == []
    dl.close()  # twice is fine


def test_download_too_many_bytes_while_consumed(store: BlobStore, tmp: str) -> None:
    data = b"0123456789"
    dl = Download(store, digest_of(data[:5]), 5, tmp)
    dl.src = io.BytesIO(data)
    with pytest.raises(BlobError, match="more than"):
        dl.read(10)
    dl.close()
    assert os.listdir(tmp) == [] and os.listdir(store.dir) == []


def test_download_source_fails(store: BlobStore, tmp: str) -> None:
    class Broken:
        def read(self, n: int = -1, /) -> bytes:
            raise ConnectionResetError("gone")

    dl = Download(store, digest_of(b"x"), 1, tmp)
    dl.src = Broken()
    with pytest.raises(ConnectionResetError):
        dl.commit()
    dl.close()
    assert os.listdir(tmp) == [] and os.listdir(store.dir) == []


def test_download_closed_without_commit(store: BlobStore, tmp: str) -> None:
    data = b"abc"
    dl = Download(store, digest_of(data), 3, tmp)
    dl.src = io.BytesIO(data)
    dl.read(3)
    dl.close()
    assert os.listdir(tmp) == [] and os.listdir(store.dir) == []


def test_download_bad_digest(store: BlobStore, tmp: str) -> None:
    for bad in ("sha512:" + "0" * 128, "sha256:XYZ", "sha256:" + "A" * 64, "nothing"):
        with pytest.raises(BlobError, match="unsupported digest"):
            Download(store, bad, 1, tmp)
    assert os.listdir(tmp) == []


def test_write(store: BlobStore) -> None:
    data = b'{"config": true}'
    d = digest_of(data)
    store.write(d, data)
    assert store.read_verified(d) == data
    assert store.stray_files() == []
    # rewriting replaces atomically (a rename over the old file: a new inode)
    ino = os.stat(store.path(d)).st_ino
    store.write(d, data)
    assert os.stat(store.path(d)).st_ino != ino
    assert store.read_verified(d) == data and store.stray_files() == []


def test_write_failure_leaves_nothing(store: BlobStore) -> None:
    with pytest.raises(BlobError):
        store.write("sha256:bad", b"x")
    assert os.listdir(store.dir) == []


def test_write_never_shows_a_partial_file(store: BlobStore,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"y" * 1000
    d = digest_of(data)
    seen: list[bool] = []
    real_replace = os.replace

    def replace(src: str, dst: str) -> None:
        # at the rename, the temp file is complete and the destination not there yet
        seen.append(Path(src).read_bytes() == data and not os.path.exists(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    store.write(d, data)
    assert seen == [True]
    assert store.read_verified(d) == data
