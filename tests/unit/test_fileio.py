"""cni.fileio.atomic_write: the old content or the new, never a part; the mode asked for."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cni.fileio import TMP_PREFIX, atomic_write


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_writes_bytes_and_text_with_the_mode_asked(tmp_path: Path) -> None:
    old = os.umask(0o077)  # the mode is exact, whatever the umask
    try:
        atomic_write(str(tmp_path / "a"), b"\x00bytes")
        atomic_write(str(tmp_path / "b"), "text é", 0o600)
    finally:
        os.umask(old)
    assert (tmp_path / "a").read_bytes() == b"\x00bytes"
    assert _mode(tmp_path / "a") == 0o644
    assert (tmp_path / "b").read_text() == "text é"
    assert _mode(tmp_path / "b") == 0o600
    assert sorted(os.listdir(tmp_path)) == ["a", "b"]


def test_replaces_by_rename_with_the_whole_new_content(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f"
    path.write_text("old")
    ino = path.stat().st_ino
    seen: list[tuple[str, str, str]] = []
    real_replace = os.replace

    def replace(src: str, dst: str) -> None:
        # at the rename: a complete temp file beside the target, which is still the old one
        seen.append((os.path.dirname(src), Path(src).read_text(), Path(dst).read_text()))
        assert os.path.basename(src).startswith(TMP_PREFIX)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    atomic_write(str(path), "new content")
    assert seen == [(str(tmp_path), "new content", "old")]
    assert path.read_text() == "new content"
    assert path.stat().st_ino != ino  # a new file, not the old one rewritten in place


def test_fsyncs_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        order.append("fsync")
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        order.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    atomic_write(str(tmp_path / "f"), b"x")
    assert order == ["fsync", "rename"]


def test_a_failure_keeps_the_old_file_and_leaves_no_temp_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f"
    path.write_text("old")

    def broken(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="No space"):
        atomic_write(str(path), "new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["f"]


def test_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write(str(tmp_path / "nope" / "f"), "x")
