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
    for bad in ("/etc/passwd", "../x", "a/../../x", "a/.."):
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
    ((entry("/abs", data=b"x"),), "absolute"),
    ((entry("l", tarfile.SYMTYPE, linkname="/tmp"), entry("l/x", data=b"x")), "symlink"),
    ((entry("h", tarfile.LNKTYPE, linkname="../../etc/passwd"),), "escapes"),
    ((entry("h", tarfile.LNKTYPE, linkname="/etc/passwd"),), "absolute"),
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
