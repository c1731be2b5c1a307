"""shim.oci.users: the container's uid, gid and groups from the CRI and the image USER."""

from __future__ import annotations

from typing import Any

import pytest

from shim.errors import InvalidArgument
from shim.oci.types import ImageFiles, SecurityContext
from shim.oci.users import parse_group, parse_passwd, resolve

pytestmark = pytest.mark.unit

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
# a comment
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
alice:x:1000:1000:Alice:/home/alice:/bin/sh
bob:x:1001:1001:Bob:/home/bob:/bin/sh
broken line
+nis:x:::
"""
GROUP = """\
root:x:0:
staff:x:50:alice
wheel:x:10:bob, alice
alice:x:1000:
bob:x:1001:
"""
FILES = ImageFiles(PASSWD, GROUP)


def sc(**kw: Any) -> SecurityContext:
    if "supplemental_groups" in kw:
        kw["supplemental_groups"] = tuple(kw["supplemental_groups"])
    return SecurityContext(**kw)


def test_parsers_skip_malformed_lines() -> None:
    assert [p.name for p in parse_passwd(PASSWD)] == ["root", "nobody", "alice", "bob"]
    wheel = next(g for g in parse_group(GROUP) if g.name == "wheel")
    assert wheel.members == ("bob", "alice")


def test_default_is_root_with_passwd_home() -> None:
    u = resolve(sc(), "", FILES)
    assert (u.uid, u.gid, u.additional_gids, u.home, u.name) == (0, 0, (0,), "/root", "root")


def test_root_without_passwd() -> None:
    u = resolve(sc(), "", ImageFiles())
    assert (u.uid, u.gid, u.home, u.name) == (0, 0, "/", "")


@pytest.mark.parametrize(
    ("image_user", "uid", "gid"),
    [
        ("1000", 1000, 1000),  # uid: gid from passwd
        ("alice", 1000, 1000),  # name
        ("1000:50", 1000, 50),  # uid:gid
        ("alice:50", 1000, 50),  # name:gid
        ("alice:staff", 1000, 50),  # name:groupname
        ("1001:staff", 1001, 50),  # uid:groupname
        ("4242", 4242, 0),  # uid not in passwd: gid 0
        ("4242:77", 4242, 77),
    ],
)
def test_image_user_forms(image_user: str, uid: int, gid: int) -> None:
    u = resolve(sc(), image_user, FILES)
    assert (u.uid, u.gid) == (uid, gid)


def test_unknown_uid_gets_slash_home_and_no_member_groups() -> None:
    u = resolve(sc(), "4242", FILES)
    assert u.home == "/" and u.name == "" and u.additional_gids == (0,)


def test_image_user_unknown_name_or_group() -> None:
    with pytest.raises(InvalidArgument, match=r"image config User 'carol'.*'carol' not found"):
        resolve(sc(), "carol", FILES)
    with pytest.raises(InvalidArgument, match="group 'nogroup' not found in the image's "):
        resolve(sc(), "alice:nogroup", FILES)


def test_run_as_user_overrides_image_user_and_its_group() -> None:
    u = resolve(sc(run_as_user=1001), "alice:staff", FILES)
    assert (u.uid, u.gid, u.home) == (1001, 1001, "/home/bob")


def test_run_as_user_zero_is_set() -> None:
    u = resolve(sc(run_as_user=0), "alice", FILES)
    assert u.uid == 0


def test_run_as_username() -> None:
    u = resolve(sc(run_as_username="bob"), "alice", FILES)
    assert (u.uid, u.gid, u.home) == (1001, 1001, "/home/bob")


def test_run_as_username_missing_names_the_field() -> None:
    with pytest.raises(InvalidArgument) as e:
        resolve(sc(run_as_username="carol"), "", FILES)
    assert e.value.message == (
        "linux.security_context.run_as_username: user 'carol' not found in the image's "
        "/etc/passwd"
    )


def test_run_as_group() -> None:
    u = resolve(sc(run_as_user=1000, run_as_group=7),
                "", FILES)
    assert (u.uid, u.gid) == (1000, 7)
    u = resolve(sc(run_as_group=7), "alice:staff", FILES)
    assert (u.uid, u.gid) == (1000, 7)


def test_negative_ids_rejected() -> None:
    with pytest.raises(InvalidArgument, match="run_as_user"):
        resolve(sc(run_as_user=-1), "", FILES)
    with pytest.raises(InvalidArgument, match="run_as_group"):
        resolve(sc(run_as_group=-5), "", FILES)
    with pytest.raises(InvalidArgument, match=r"supplemental_groups\[1\]"):
        resolve(sc(supplemental_groups=[3, -3]), "", FILES)


def test_merge_adds_group_memberships() -> None:
    u = resolve(sc(run_as_username="alice", supplemental_groups=[3000, 50]), "", FILES)
    assert u.additional_gids == (1000, 50, 10, 3000)


def test_merge_by_uid_uses_passwd_name() -> None:
    u = resolve(sc(run_as_user=1000), "", FILES)
    assert u.additional_gids == (1000, 50, 10)


def test_strict_keeps_only_requested() -> None:
    u = resolve(sc(run_as_username="alice", supplemental_groups=[3000],
                   supplemental_groups_strict=True), "", FILES)
    assert u.additional_gids == (1000, 3000)
