"""Finding a container's command inside its rootfs (never outside it)."""

from __future__ import annotations

import os
from pathlib import Path

from shim.oci.lookup import command_exists, resolve_in_root

ENV = ["PATH=/usr/local/bin:/usr/bin:/bin"]


def _root(tmp_path: Path) -> Path:
    r = tmp_path / "rootfs"
    (r / "bin").mkdir(parents=True)
    (r / "usr/bin").mkdir(parents=True)
    (r / "bin/busybox").write_text("elf")
    os.symlink("/bin/busybox", r / "bin/sh")  # absolute: from the rootfs's root
    os.symlink("../../bin/busybox", r / "usr/bin/env")
    os.symlink("/etc/passwd", r / "bin/escape")  # the host's /etc/passwd is not the image's
    os.symlink("loop", r / "bin/loop")
    return r


def test_paths_and_links_resolve_inside_the_root(tmp_path: Path) -> None:
    r = _root(tmp_path)
    assert resolve_in_root(str(r), "/bin/sh") == str(r / "bin/busybox")
    assert resolve_in_root(str(r), "/usr/bin/env") == str(r / "bin/busybox")
    assert resolve_in_root(str(r), "/../../bin/sh") == str(r / "bin/busybox")
    assert resolve_in_root(str(r), "/bin/escape") is None
    assert resolve_in_root(str(r), "/bin/loop") is None


def test_command_lookup(tmp_path: Path) -> None:
    r = str(_root(tmp_path))
    assert command_exists(r, "sh", ENV, "/", [])
    assert command_exists(r, "/bin/sh", ENV, "/", [])
    assert command_exists(r, "./busybox", ENV, "/bin", [])
    assert command_exists(r, "env", ENV, "/", [])
    assert not command_exists(r, "nope", ENV, "/", [])
    assert not command_exists(r, "/bin/escape", ENV, "/", [])
    assert not command_exists(r, "sh", [], "/", [])  # no PATH: nothing to search
    assert not command_exists(r, "/bin", ENV, "/", [])  # a directory
    # from a mount: cannot be checked here, so not refused
    assert command_exists(r, "/opt/tools/run", ENV, "/", ["/opt/tools"])
    assert command_exists(r, "tool", ["PATH=/opt/tools:/bin"], "/", ["/opt/tools"])
