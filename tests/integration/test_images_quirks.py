"""Layers as real build tools write them, which Docker and containerd accept: tar streams
without the end-of-archive blocks (and without the last entry's padding), names with a
leading ``/`` or ``./``, hardlink targets given as absolute paths (inside the layer), GNU and
PAX long names, sparse files (GNU tar's old GNU and PAX 1.0 formats). Each is an image served
from the test registry; the pull must succeed with the diff_id checked, and every file must
land in the snapshot (never outside it)."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.integration.images_fixtures import *  # noqa: F403  (fixtures)
from tests.integration.images_fixtures import ImageDaemon, rootfs_of
from tests.integration.malicious_layers import layer_tar, push_layout, write_layout
from tests.rig.images import ImageRegistry

MTIME = 1704067200
LONG_DIR = "a" * 60 + "/" + "b" * 60  # > 100 bytes: needs a long-name extension
LONG_FILE = LONG_DIR + "/" + "c" * 80


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]], fmt: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for ti, data in members:
            ti.mtime = MTIME
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _reg(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode = len(data), 0o644
    return ti, data


def _dir(name: str) -> tuple[tarfile.TarInfo, None]:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode = tarfile.DIRTYPE, 0o755
    return ti, None


def _hardlink(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname = tarfile.LNKTYPE, target
    return ti, None


def unterminated(tar: bytes) -> bytes:
    """What an unclosed Go tar.Writer leaves: the last entry's data unpadded, no end blocks."""
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        last = t.getmembers()[-1]
    return tar[: last.offset_data + last.size]


def sparse_tar(workdir: Path, fmt: str) -> bytes:
    """GNU tar --sparse of a 4 MiB file with 2 bytes of data (``fmt``: gnu or posix)."""
    src = workdir / f"sparse-src-{fmt}"
    src.mkdir(parents=True)
    with open(src / "holes.bin", "wb") as f:
        f.write(b"A")
        f.seek(4 << 20)
        f.write(b"Z")
    out = workdir / f"sparse-{fmt}.tar"
    subprocess.run(["tar", "--sparse", f"--format={fmt}", "--numeric-owner", "--owner=0",
                    "--group=0", f"--mtime=@{MTIME}", "-cf", str(out), "-C", str(src),
                    "holes.bin"], check=True)
    tar = out.read_bytes()
    with tarfile.open(out) as t:
        assert all(m.issparse() for m in t)  # really sparse entries, in either format
    return tar


QUIRKS = ["unterminated", "leading-slash", "absolute-hardlink", "gnu-long-names",
          "pax-long-names", "sparse-gnu", "sparse-pax"]


def layer_for(quirk: str, workdir: Path) -> bytes:
    if quirk == "unterminated":
        return unterminated(_tar([_dir("q"), _reg("q/first", b"1\n"), _reg("q/odd", b"xyz")],
                                 tarfile.PAX_FORMAT))
    if quirk == "leading-slash":
        return _tar([_dir("/q"), _reg("/q/slash", b"slash\n"), _dir("./q/dot"),
                     _reg("./q/dot/file", b"dot\n")], tarfile.GNU_FORMAT)
    if quirk == "absolute-hardlink":
        return _tar([_dir("q"), _reg("q/orig", b"same inode\n"), _hardlink("q/link", "/q/orig")],
                    tarfile.GNU_FORMAT)
    if quirk == "gnu-long-names":
        return _tar([_dir("a" * 60), _dir(LONG_DIR), _reg(LONG_FILE, b"long\n")],
                    tarfile.GNU_FORMAT)
    if quirk == "pax-long-names":
        return _tar([_dir("a" * 60), _dir(LONG_DIR), _reg(LONG_FILE, b"long\n")],
                    tarfile.PAX_FORMAT)
    if quirk == "sparse-gnu":
        return sparse_tar(workdir, "gnu")
    if quirk == "sparse-pax":
        return sparse_tar(workdir, "posix")
    raise AssertionError(quirk)


def check_rootfs(quirk: str, root: Path) -> None:
    q = root / "q"
    if quirk == "unterminated":
        assert (q / "first").read_bytes() == b"1\n" and (q / "odd").read_bytes() == b"xyz"
    elif quirk == "leading-slash":
        assert (q / "slash").read_text() == "slash\n"
        assert (q / "dot" / "file").read_text() == "dot\n"
    elif quirk == "absolute-hardlink":
        assert (q / "link").read_text() == "same inode\n"
        assert os.stat(q / "link").st_ino == os.stat(q / "orig").st_ino
    elif quirk in ("gnu-long-names", "pax-long-names"):
        assert (root / LONG_FILE).read_text() == "long\n"
    elif quirk.startswith("sparse"):
        f = root / "holes.bin"
        assert f.stat().st_size == (4 << 20) + 1
        with open(f, "rb") as fh:
            assert fh.read(1) == b"A"
            fh.seek(4 << 20)
            assert fh.read(1) == b"Z"
            fh.seek(1 << 20)
            assert fh.read(16) == bytes(16)


@pytest.fixture(scope="module")
def quirky_images(registry: ImageRegistry, tmp_path_factory: pytest.TempPathFactory
                  ) -> dict[str, tuple[str, dict[str, str]]]:
    work = tmp_path_factory.mktemp("quirks")
    base = layer_tar([])  # an empty first layer, as FROM scratch
    out = {}
    for quirk in QUIRKS:
        layout = work / quirk
        digests = write_layout(layout, [base, layer_for(quirk, work)])
        ref = f"{registry.host}/quirks/{quirk}:latest"
        push_layout(layout, ref)
        out[quirk] = (ref, digests)
    return out


@pytest.mark.parametrize("quirk", QUIRKS)
def test_quirky_layer_pulls_and_unpacks_inside_its_snapshot(
    quirk: str, quirky_images: dict[str, tuple[str, dict[str, str]]],
    image_daemon: ImageDaemon, tmp_path: Path,
) -> None:
    ref, _ = quirky_images[quirk]
    image_id = image_daemon.pull(ref)
    with rootfs_of(image_daemon, image_id, tmp_path / "ctr") as root:
        check_rootfs(quirk, root)


def test_umoci_insert_layers_pull(registry: ImageRegistry, image_daemon: ImageDaemon,
                                  tmp_path: Path) -> None:
    """The image the conformance issue found: busybox plus two layers written by Debian's
    `umoci insert` 0.4.7 (their tar streams end without the closing blocks)."""
    image_id = image_daemon.pull(registry.ref("inserted"))
    with rootfs_of(image_daemon, image_id, tmp_path / "ctr") as root:
        assert (root / "inserted" / "one.txt").read_text() == "one\n"
        assert (root / "inserted" / "two.txt").read_text() == "two\n"
        assert (root / "bin" / "busybox").exists()


def test_a_stream_cut_short_is_still_refused(registry: ImageRegistry,
                                            image_daemon: ImageDaemon,
                                            tmp_path: Path) -> None:
    """Zeros stand in only for a missing padding and end of archive: a layer that ends
    inside a file's data is refused (even with a diff_id made of those very bytes), and
    nothing is kept."""
    full = _tar([_reg("big", b"x" * 5000)], tarfile.PAX_FORMAT)
    cut = full[:2048]
    layout = tmp_path / "cut"
    digests = write_layout(layout, [cut])
    ref = f"{registry.host}/quirks/cut:latest"
    push_layout(layout, ref)
    err = image_daemon.pull_error(ref)
    assert "unexpected end of data" in (err.details() or ""), err.details()
    blobs = {p.name for p in image_daemon.blobs_dir.iterdir()}
    assert digests["layer0"].split(":")[1] not in blobs
    assert image_daemon.list() == []
