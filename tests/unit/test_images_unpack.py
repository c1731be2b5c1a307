"""Layer unpacking: overlay whiteouts, metadata, diff_id, and every escape refused.

Needs root (ownership, device nodes, trusted.* xattrs); skipped otherwise.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from shim.images.unpack import OPAQUE_XATTR, LayerError, UnsafeEntry, _check_path, unpack

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

Add = Callable[[tarfile.TarFile], None]


def entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **kw: object) -> Add:
    def add(tar: tarfile.TarFile) -> None:
        t = tarfile.TarInfo(name)
        t.type = kind
        t.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
        t.mtime = 1234567890
        for k, v in kw.items():
            setattr(t, k, v)
        t.size = len(data)
        tar.addfile(t, io.BytesIO(data) if data else None)

    return add


def tarball(*adds: Add) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for a in adds:
            a(tar)
    return buf.getvalue()


def run(tmp_path: Path, data: bytes, compress: str = "gzip") -> Path:
    blob = tmp_path / "blob"
    if compress == "gzip":
        blob.write_bytes(gzip.compress(data))
    elif compress == "zstd":
        blob.write_bytes(subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True,
                                        check=True).stdout)
    else:
        blob.write_bytes(data)
    dest = tmp_path / "fs"
    dest.mkdir(exist_ok=True)
    res = unpack(str(blob), str(dest), "sha256:" + hashlib.sha256(data).hexdigest())
    assert res.size == len(data)
    return dest


def test_check_path() -> None:
    assert _check_path("./a//b/./c", "e") == ["a", "b", "c"]
    assert _check_path("./", "e") == []
    assert _check_path("/etc/passwd", "e") == ["etc", "passwd"]  # from the layer's root
    for bad in ("../x", "a/../../x", "a/..", "/../etc/passwd"):
        with pytest.raises(UnsafeEntry):
            _check_path(bad, "e")


@root_only
@pytest.mark.parametrize("compress", ["gzip", "zstd", "none"])
def test_metadata_kept(tmp_path: Path, compress: str) -> None:
    data = tarball(
        entry("./", tarfile.DIRTYPE, mode=0o755),
        entry("bin", tarfile.DIRTYPE),
        entry("bin/su", data=b"x", mode=0o4755, uid=0, gid=0),
        entry("bin/app", data=b"y", mode=0o2750, uid=1000, gid=50),
        entry("bin/link", tarfile.LNKTYPE, linkname="bin/su"),
        entry("bin/sym", tarfile.SYMTYPE, linkname="../nowhere", uid=7, gid=8),
        entry("dev/zero", tarfile.CHRTYPE, devmajor=1, devminor=5, mode=0o666),
        entry("fifo", tarfile.FIFOTYPE, mode=0o600),
        entry("f", data=b"z", pax_headers={"SCHILY.xattr.user.k": "v",
                                           "SCHILY.xattr.trusted.overlay.redirect": "/x"}),
    )
    fs = run(tmp_path, data, compress)
    su = (fs / "bin/su").lstat()
    assert stat.S_IMODE(su.st_mode) == 0o4755 and su.st_mtime == 1234567890
    app = (fs / "bin/app").lstat()
    assert (stat.S_IMODE(app.st_mode), app.st_uid, app.st_gid) == (0o2750, 1000, 50)
    assert (fs / "bin/link").lstat().st_ino == su.st_ino
    sym = (fs / "bin/sym").lstat()
    assert os.readlink(fs / "bin/sym") == "../nowhere" and (sym.st_uid, sym.st_gid) == (7, 8)
    z = (fs / "dev/zero").lstat()
    assert stat.S_ISCHR(z.st_mode) and os.minor(z.st_rdev) == 5
    assert (fs / "dev").lstat().st_mode & 0o777 == 0o755  # implicit parent
    assert stat.S_ISFIFO((fs / "fifo").lstat().st_mode)
    assert os.getxattr(fs / "f", "user.k") == b"v"
    assert "trusted.overlay.redirect" not in os.listxattr(fs / "f")
    assert (fs / "bin").lstat().st_mtime == 1234567890  # dir mtimes set last


@root_only
def test_whiteouts(tmp_path: Path) -> None:
    data = tarball(
        entry("data", tarfile.DIRTYPE),
        entry("data/.wh.gone"),
        entry("data/dir", tarfile.DIRTYPE),
        entry("data/dir/.wh..wh..opq"),
        entry("data/dir/c", data=b"c"),
        entry("other/.wh..wh..opq"),
        entry("x/.wh..wh.plnk"),
    )
    fs = run(tmp_path, data)
    gone = (fs / "data/gone").lstat()
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert os.getxattr(fs / "data/dir", OPAQUE_XATTR) == b"y"
    assert os.getxattr(fs / "other", OPAQUE_XATTR) == b"y"
    assert sorted(os.listdir(fs / "data/dir")) == ["c"]
    assert not (fs / "data/.wh.gone").exists()
    assert os.listdir(fs / "x") == []


@root_only
def test_later_entries_replace_earlier(tmp_path: Path) -> None:
    data = tarball(
        entry("a", tarfile.SYMTYPE, linkname="/etc/passwd"),
        entry("a", data=b"now a file"),  # replaces the symlink, never writes through it
        entry("d", tarfile.DIRTYPE),
        entry("d/x", data=b"x"),
        entry("d", tarfile.DIRTYPE, mode=0o700),  # a dir again: kept, metadata updated
    )
    fs = run(tmp_path, data)
    assert (fs / "a").read_bytes() == b"now a file" and not (fs / "a").is_symlink()
    assert (fs / "d/x").exists() and stat.S_IMODE((fs / "d").lstat().st_mode) == 0o700


@root_only
@pytest.mark.parametrize(("adds", "needle"), [
    ((entry("../x", data=b"x"),), "'..'"),
    ((entry("l", tarfile.SYMTYPE, linkname="/tmp"), entry("l/x", data=b"x")), "symlink"),
    ((entry("h", tarfile.LNKTYPE, linkname="../../etc/passwd"),), "escapes"),
    ((entry("h", tarfile.LNKTYPE, linkname="/etc/passwd"),), "not in this layer"),
    ((entry("h", tarfile.LNKTYPE, linkname="missing"),), "not in this layer"),
    ((entry("f", data=b"x"), entry("f/g", data=b"x")), "not a directory"),
    ((entry("s", tarfile.SYMTYPE, linkname="/etc"),
      entry("h", tarfile.LNKTYPE, linkname="s/passwd")), "symlink"),
    ((entry("d", tarfile.DIRTYPE), entry("h", tarfile.LNKTYPE, linkname="d")), "directory"),
    ((entry(".wh..."),), "whiteout"),
])
def test_unsafe(tmp_path: Path, adds: tuple[Add, ...], needle: str) -> None:
    with pytest.raises(UnsafeEntry) as e:
        run(tmp_path, tarball(*adds))
    assert needle in str(e.value)
    assert not (tmp_path.parent / "x").exists()


@root_only
def test_absolute_names_and_hardlink_targets_are_inside_the_layer(tmp_path: Path) -> None:
    data = tarball(
        entry("/etc", tarfile.DIRTYPE),
        entry("/etc/passwd", data=b"in the layer"),
        entry("./etc/alias", tarfile.LNKTYPE, linkname="/etc/passwd"),
    )
    fs = run(tmp_path, data)
    assert (fs / "etc/passwd").read_bytes() == b"in the layer"
    assert (fs / "etc/alias").stat().st_ino == (fs / "etc/passwd").stat().st_ino
    assert Path("/etc/passwd").read_bytes()[:12] != b"in the layer"


@root_only
def test_unterminated_stream_accepted_but_not_one_cut_inside_data(tmp_path: Path) -> None:
    data = tarball(entry("a", data=b"a" * 700), entry("b", data=b"xyz"))
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        last = t.getmembers()[-1]
    end = last.offset_data + last.size
    fs = run(tmp_path, data[:end])  # no padding, no end-of-archive blocks
    assert (fs / "b").read_bytes() == b"xyz" and (fs / "a").read_bytes() == b"a" * 700
    (tmp_path / "cut").mkdir()
    with pytest.raises(LayerError, match="unexpected end of data"):
        run(tmp_path / "cut", data[:end - 1])


@root_only
def test_diff_id_mismatch_and_corruption(tmp_path: Path) -> None:
    data = tarball(entry("a", data=b"a"))
    blob = tmp_path / "blob"
    blob.write_bytes(gzip.compress(data))
    dest = tmp_path / "fs"
    dest.mkdir()
    with pytest.raises(LayerError, match="diff_id"):
        unpack(str(blob), str(dest), "sha256:" + "0" * 64)
    blob.write_bytes(gzip.compress(data)[:-20])
    dest2 = tmp_path / "fs2"
    dest2.mkdir()
    with pytest.raises(LayerError):
        unpack(str(blob), str(dest2), None)
    blob.write_bytes(b"\x28\xb5\x2f\xfd garbage")
    dest3 = tmp_path / "fs3"
    dest3.mkdir()
    with pytest.raises(LayerError):
        unpack(str(blob), str(dest3), None)


# --- streams (a registry response rather than a blob path) ---------------------------------
# Entries owned by the test's own user, so these run without root.


class Chunks:
    """A stream source handing out at most ``step`` bytes a read; optionally failing once
    ``fail_at`` bytes have gone out."""

    def __init__(self, data: bytes, step: int = 64 << 10, fail_at: int | None = None) -> None:
        self._f = io.BytesIO(data)
        self.step = step
        self.fail_at = fail_at
        self.sent = 0

    def read(self, n: int = -1, /) -> bytes:
        if self.fail_at is not None and self.sent >= self.fail_at:
            raise SourceBroke("the registry went away")
        want = self.step if n < 0 else min(n, self.step)
        if self.fail_at is not None:
            want = min(want, self.fail_at - self.sent)
        data = self._f.read(want)
        self.sent += len(data)
        return data


class SourceBroke(Exception):
    pass


def mine(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **kw: object) -> Add:
    return entry(name, kind, data, uid=os.getuid(), gid=os.getgid(), **kw)


def zstd(data: bytes) -> bytes:
    return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True,
                          check=True).stdout


def compressed(data: bytes, compress: str) -> bytes:
    if compress == "gzip":
        return gzip.compress(data)
    if compress == "zstd":
        return zstd(data)
    return data


def zstd_children() -> set[int]:
    """zstd processes that are children of this process (any thread)."""
    out: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        try:
            kids = Path(f"/proc/self/task/{task}/children").read_text().split()
        except OSError:
            continue
        for pid in kids:
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "zstd":
                    out.add(int(pid))
            except OSError:
                continue
    return out


def sample() -> bytes:
    return tarball(
        mine("d", tarfile.DIRTYPE),
        mine("d/small", data=b"small"),
        mine("d/big", data=os.urandom(300_000) + b"tail"),
        mine("d/link", tarfile.SYMTYPE, linkname="big"),
    )


def dest_dir(tmp_path: Path, name: str = "fs") -> str:
    d = tmp_path / name
    d.mkdir()
    return str(d)


def check_sample(fs: str, data: bytes) -> None:
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        big = t.extractfile("d/big")
        assert big is not None
        want = big.read()
    assert Path(fs, "d/small").read_bytes() == b"small"
    assert Path(fs, "d/big").read_bytes() == want
    assert os.readlink(Path(fs, "d/link")) == "big"


@pytest.mark.parametrize("compress", ["gzip", "zstd", "none"])
@pytest.mark.parametrize("step", [3, 64 << 10, 4 << 20])
def test_stream_source(tmp_path: Path, compress: str, step: int) -> None:
    data = sample()
    blob = compressed(data, compress)
    if step == 3 and len(blob) > 400_000:
        step = 1000  # tiny reads for the magic bytes are what matters; keep it quick
    src = Chunks(blob, step)
    fs = dest_dir(tmp_path)
    before = zstd_children()
    res = unpack(src, fs, "sha256:" + hashlib.sha256(data).hexdigest())
    assert res.size == len(data) and res.entries == 4
    check_sample(fs, data)
    assert zstd_children() <= before


def test_stream_tiny_first_reads(tmp_path: Path) -> None:
    data = sample()
    for compress in ("gzip", "zstd", "none"):
        fs = dest_dir(tmp_path, compress)
        blob = compressed(data, compress)

        class Trickle(Chunks):
            def read(self, n: int = -1, /) -> bytes:  # 1 byte at first, then big reads
                return super().read(1 if self.sent < 6 else n)

        res = unpack(Trickle(blob), fs, None)
        assert res.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
        check_sample(fs, data)


def test_gzip_multi_member(tmp_path: Path) -> None:
    data = sample()
    cut1, cut2 = 700, 200_001  # members split the tar anywhere, even mid-header
    blob = gzip.compress(data[:cut1]) + gzip.compress(data[cut1:cut2]) + \
        gzip.compress(data[cut2:])
    fs = dest_dir(tmp_path)
    res = unpack(Chunks(blob, 5000), fs, "sha256:" + hashlib.sha256(data).hexdigest())
    assert res.size == len(data)
    check_sample(fs, data)


@pytest.mark.parametrize("padding", [1, 512, 100_000])
def test_gzip_zero_padding(tmp_path: Path, padding: int) -> None:
    data = sample()
    fs = dest_dir(tmp_path)
    res = unpack(Chunks(gzip.compress(data) + b"\0" * padding, 4096), fs, None)
    assert res.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    check_sample(fs, data)


@pytest.mark.parametrize("cut", [-4, -9, -1000, 30])
def test_gzip_truncated(tmp_path: Path, cut: int) -> None:
    blob = gzip.compress(sample())[:cut]
    with pytest.raises(LayerError):
        unpack(Chunks(blob, 4096), dest_dir(tmp_path), None)


def test_gzip_garbage_after_member(tmp_path: Path) -> None:
    blob = gzip.compress(sample()) + b"not gzip at all"
    with pytest.raises(LayerError):
        unpack(Chunks(blob), dest_dir(tmp_path), None)


def test_zstd_truncated(tmp_path: Path) -> None:
    before = zstd_children()
    blob = zstd(sample())
    with pytest.raises(LayerError):
        unpack(Chunks(blob[: len(blob) // 2]), dest_dir(tmp_path), None)
    assert zstd_children() <= before


@pytest.mark.parametrize("compress", ["gzip", "none"])
@pytest.mark.parametrize("where", [0.05, 0.5, 0.999])
def test_source_error_propagates(tmp_path: Path, compress: str, where: float) -> None:
    blob = compressed(sample(), compress)
    src = Chunks(blob, 4096, fail_at=max(4, int(len(blob) * where)))
    with pytest.raises(SourceBroke):
        unpack(src, dest_dir(tmp_path), None)


@pytest.mark.parametrize("where", [0.05, 0.5, 0.999])
def test_source_error_zstd_leaves_no_process(tmp_path: Path, where: float) -> None:
    before = zstd_children()
    blob = zstd(sample())
    src = Chunks(blob, 4096, fail_at=max(4, int(len(blob) * where)))
    with pytest.raises((SourceBroke, LayerError)):
        unpack(src, dest_dir(tmp_path), None)
    assert zstd_children() <= before


@pytest.mark.parametrize("where", [0.05, 0.5, 0.999])
def test_source_error_propagates_zstd(tmp_path: Path, where: float) -> None:
    blob = zstd(sample())
    src = Chunks(blob, 4096, fail_at=max(4, int(len(blob) * where)))
    with pytest.raises(SourceBroke):
        unpack(src, dest_dir(tmp_path), None)


def test_zstd_unpack_error_leaves_no_process(tmp_path: Path) -> None:
    """An unsafe entry stops the walk early, zstd still running: it is killed and reaped."""
    data = tarball(mine("../escape", data=b"x"), mine("big", data=os.urandom(2 << 20)))
    before = zstd_children()
    with pytest.raises(UnsafeEntry):
        unpack(Chunks(zstd(data)), dest_dir(tmp_path), None)
    assert zstd_children() <= before
    assert not (tmp_path / "escape").exists()


@pytest.mark.parametrize("compress", ["gzip", "zstd", "none"])
def test_diff_id_covers_end_padding(tmp_path: Path, compress: str) -> None:
    data = tarball(mine("a", data=b"a"))
    assert len(data) == tarfile.RECORDSIZE  # end-of-archive blocks plus record padding
    padded = data + b"\0" * 4096  # some writers pad further
    for i, tar in enumerate((data, padded)):
        res = unpack(Chunks(compressed(tar, compress)), dest_dir(tmp_path, str(i)), None)
        assert res.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
        assert res.size == len(tar)
    with pytest.raises(LayerError, match="diff_id"):
        unpack(Chunks(compressed(padded, compress)), dest_dir(tmp_path, "x"),
               "sha256:" + hashlib.sha256(data).hexdigest())


def test_stream_and_path_agree(tmp_path: Path) -> None:
    data = sample()
    blob = tmp_path / "blob"
    blob.write_bytes(gzip.compress(data))
    a = unpack(str(blob), dest_dir(tmp_path, "a"), None)
    with open(blob, "rb") as f:
        b = unpack(f, dest_dir(tmp_path, "b"), None)
    assert a == b


def test_no_fd_left_when_the_source_fails_at_once(tmp_path: Path) -> None:
    """A registry error on the very first read (stall, cancel, 5xx) must not leak the
    snapshot's directory fd: kubelet retries would exhaust the daemon's fds."""

    class Failing:
        def read(self, n: int = -1, /) -> bytes:
            raise ConnectionError("registry went away")

    before = len(os.listdir("/proc/self/fd"))
    for i in range(5):
        dest = tmp_path / f"fs{i}"
        dest.mkdir()
        with pytest.raises(ConnectionError):
            unpack(Failing(), str(dest))
    assert len(os.listdir("/proc/self/fd")) == before
