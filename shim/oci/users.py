"""The container's user: CRI security context and image USER, resolved in the image's
/etc/passwd and /etc/group (their text, read from the rootfs by the container manager).

Precedence: ``run_as_user`` (uid), else ``run_as_username``, else the image USER (``uid``,
``name``, ``uid:gid``, ``name:gid``, ``name:group``, ``uid:group``), else root. The primary gid
is ``run_as_group`` when set, else the image USER's group, else the passwd entry's, else 0.
Supplementary groups: policy Merge adds the /etc/group groups listing the user; Strict keeps
only the requested ones. The primary gid always leads ``additional_gids``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shim.errors import InvalidArgument
from shim.oci.types import ImageFiles, SecurityContext

MAX_ID = 2**32 - 2  # (uid_t)-1 is "no change" for the kernel
SC = "linux.security_context"


@dataclass(frozen=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class User:
    uid: int
    gid: int
    additional_gids: tuple[int, ...]
    home: str  # "/" when the user has no passwd entry
    name: str  # "" when the user has no passwd entry


def _int(s: str) -> int | None:
    s = s.strip()
    return int(s) if s.isdigit() else None


def parse_passwd(text: str) -> list[PasswdEntry]:
    """``name:pw:uid:gid:gecos:home:shell`` lines; malformed ones and NIS ``+``/``-`` skipped."""
    out = []
    for line in text.splitlines():
        if not line.strip() or line.startswith(("#", "+", "-")):
            continue
        f = line.split(":")
        if len(f) < 4:
            continue
        uid, gid = _int(f[2]), _int(f[3])
        if uid is None or gid is None or not f[0]:
            continue
        out.append(PasswdEntry(f[0], uid, gid, f[5] if len(f) > 5 and f[5] else "/"))
    return out


def parse_group(text: str) -> list[GroupEntry]:
    """``name:pw:gid:member,member`` lines; malformed ones skipped."""
    out = []
    for line in text.splitlines():
        if not line.strip() or line.startswith(("#", "+", "-")):
            continue
        f = line.split(":")
        if len(f) < 3:
            continue
        gid = _int(f[2])
        if gid is None or not f[0]:
            continue
        members = tuple(m.strip() for m in f[3].split(",") if m.strip()) if len(f) > 3 else ()
        out.append(GroupEntry(f[0], gid, members))
    return out


def _check_id(value: int, field: str) -> int:
    if not 0 <= value <= MAX_ID:
        raise InvalidArgument(f"{field}: {value} is not a valid id (0..{MAX_ID})")
    return value


def _dedupe(ids: Iterable[int]) -> tuple[int, ...]:
    return tuple(dict.fromkeys(ids))


def resolve(sc: SecurityContext, image_user: str, files: ImageFiles) -> User:
    """The process user; InvalidArgument naming the field when a name does not resolve."""
    passwd = parse_passwd(files.passwd)
    groups = parse_group(files.group)
    group_spec = ""
    group_field = ""
    if sc.run_as_user is not None:
        user_spec = str(_check_id(sc.run_as_user, f"{SC}.run_as_user"))
        user_field = f"{SC}.run_as_user"
    elif sc.run_as_username:
        user_spec = sc.run_as_username
        user_field = f"{SC}.run_as_username"
    else:
        user_spec, _, group_spec = image_user.strip().partition(":")
        user_field = group_field = f"image config User {image_user!r}"

    entry: PasswdEntry | None = None
    if not user_spec:
        uid = 0
        entry = next((p for p in passwd if p.uid == 0), None)
    elif (n := _int(user_spec)) is not None:
        uid = _check_id(n, user_field)
        entry = next((p for p in passwd if p.uid == uid), None)
    else:
        entry = next((p for p in passwd if p.name == user_spec), None)
        if entry is None:
            raise InvalidArgument(
                f"{user_field}: user {user_spec!r} not found in the image's /etc/passwd"
            )
        uid = entry.uid

    gid = entry.gid if entry else 0
    if sc.run_as_group is not None:
        gid = _check_id(sc.run_as_group, f"{SC}.run_as_group")
    elif group_spec:
        if (g := _int(group_spec)) is not None:
            gid = _check_id(g, group_field)
        else:
            ge = next((x for x in groups if x.name == group_spec), None)
            if ge is None:
                raise InvalidArgument(
                    f"{group_field}: group {group_spec!r} not found in the image's /etc/group"
                )
            gid = ge.gid

    requested = [
        _check_id(g, f"{SC}.supplemental_groups[{i}]")
        for i, g in enumerate(sc.supplemental_groups)
    ]
    name = entry.name if entry else ""
    member_of: list[int] = []
    if not sc.supplemental_groups_strict and name:
        member_of = [g.gid for g in groups if name in g.members]
    return User(
        uid=uid,
        gid=gid,
        additional_gids=_dedupe([gid, *member_of, *requested]),
        home=entry.home if entry else "/",
        name=name,
    )
