"""Images as CRI messages (kept here so the catalog can cache them for the hot paths)."""

from __future__ import annotations

from shim.cri import api_pb2 as pb
from shim.images.manifest import user_ids
from shim.images.model import Image


def to_pb(img: Image, pinned: bool) -> pb.Image:
    uid, username = user_ids(img.config.user)
    msg = pb.Image(
        id=img.id,
        repo_tags=list(img.repo_tags),
        repo_digests=list(img.repo_digests),
        size=img.size,
        username=username,
        spec=pb.ImageSpec(image=img.id),
        pinned=pinned,
    )
    if uid is not None:
        msg.uid.value = uid
    return msg
