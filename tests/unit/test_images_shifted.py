"""Shifted layer copies (user namespaces without idmapped mounts): ids, file capabilities,
and a tree shifted in place with its hard links, set-id bits, links and whiteouts."""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

import pytest

from podsandbox.types import IDMapping
from shim.images.shifted import RootfsIds, shift_id, shift_tree, shifted_caps

M = (IDMapping(0, 100000, 65536),)


def test_shift_id() -> None:
    assert shift_id(0, M) == 100000
    assert shift_id(1000, M) == 101000
    assert shift_id(65535, M) == 165535
    # beyond the map: the namespace's nobody, as an idmapped mount would show it
    assert shift_id(70000, M) == 100000 + 65534
    assert shift_id(5, (IDMapping(0, 200, 3),)) == 5  # nobody unmapped too: unchanged


def test_key_and_owner() -> None:
    ids = RootfsIds("/pin", M, (IDMapping(0, 300000, 65536),), copy=True)
    assert ids.owner() == (100000, 300000)
    assert ids.key() == "u0-100000-65536.g0-300000-65536"


def test_file_capabilities_become_v3_with_the_pods_root() -> None:
    v2 = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)  # cap_net_bind_service, +e
    v3 = shifted_caps(v2, 100000)
    assert struct.unpack("<IIIIII", v3) == (0x03000001, 1 << 10, 0, 0, 0, 100000)
    assert shifted_caps(v3, 200000)[-4:] == struct.pack("<I", 200000)
    assert shifted_caps(b"junk", 1) == b"junk"


@pytest.mark.skipif(os.geteuid() != 0, reason="chown, mknod and capabilities need root")
def test_shift_tree(tmp_path: Path) -> None:
    top = tmp_path / "fs"
    (top / "bin").mkdir(parents=True)
    su = top / "bin" / "su"
    su.write_bytes(b"x")
    su.chmod(0o4755)
    os.link(su, top / "bin" / "su-link")  # one inode, two names: shifted once
    ping = top / "bin" / "ping"
    ping.write_bytes(b"x")
    os.setxattr(ping, "security.capability", struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0))
    home = top / "home" / "alice"
    home.mkdir(parents=True)
    os.chown(home, 1000, 1000)
    (top / "bin" / "sh").symlink_to("busybox")
    os.mknod(top / "gone", stat.S_IFCHR | 0o000, os.makedev(0, 0))  # an overlay whiteout

    shift_tree(str(top), RootfsIds("/pin", M, M, copy=True))

    def owner(p: Path) -> tuple[int, int]:
        st = os.lstat(p)
        return st.st_uid, st.st_gid

    assert owner(top) == owner(su) == owner(top / "bin" / "sh") == (100000, 100000)
    assert owner(home) == (101000, 101000)
    assert os.stat(su).st_mode & 0o7777 == 0o4755  # chown cleared it; put back
    assert os.stat(top / "bin" / "su-link").st_ino == os.stat(su).st_ino
    caps = os.getxattr(ping, "security.capability")
    assert struct.unpack("<IIIIII", caps)[0] >> 24 == 3 and caps[-4:] == struct.pack("<I", 100000)
    assert stat.S_ISCHR(os.lstat(top / "gone").st_mode) and owner(top / "gone") == (100000,
                                                                                    100000)


def test_what_a_crash_left_goes_and_copies_stay(tmp_path: Path) -> None:
    from shim.images.shifted import ShiftedCopies

    copies = ShiftedCopies(str(tmp_path))
    root = Path(copies.root)
    whole = root / "u0-1-2.g0-1-2" / ("a" * 64) / "fs"
    whole.mkdir(parents=True)
    leftovers = [root / "u0-1-2.g0-1-2" / ("b" * 64) / "fs.tmp-1234",  # a copy under way
                 root / "u0-1-2.g0-1-2" / "empty.tmp-99",  # an image without layers
                 root / "u0-3-4.g0-3-4.tmp-rm-ab"]  # a drop under way
    for p in leftovers:
        p.mkdir(parents=True)
    assert copies.remove_tmp() == 3
    assert whole.is_dir() and not any(p.exists() for p in leftovers)
    assert copies.keys() == {"u0-1-2.g0-1-2"}
    copies.drop("u0-1-2.g0-1-2")
    assert copies.keys() == set() and not (root / "u0-1-2.g0-1-2").exists()
