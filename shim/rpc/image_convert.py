"""CRI messages <-> the image layer's types: the Image view of a summary, AuthConfig as
credentials (checked), filesystem usage, the List filter. Pure functions."""

from __future__ import annotations

from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.images.auth import Credentials
from shim.images.fsusage import Usage
from shim.images.model import ImageSummary

_AUTH_FIELDS = ("username", "password", "auth", "identity_token", "registry_token",
                "server_address")


def to_image(s: ImageSummary) -> pb.Image:
    msg = pb.Image(
        id=s.id,
        repo_tags=list(s.repo_tags),
        repo_digests=list(s.repo_digests),
        size=s.size,
        username=s.username,
        spec=pb.ImageSpec(image=s.id),
        pinned=s.pinned,
    )
    if s.uid is not None:
        msg.uid.value = s.uid
    return msg


def credentials(a: pb.AuthConfig) -> Credentials:
    for name in _AUTH_FIELDS:
        # they end up in HTTP headers and form bodies: a CR/LF would split them
        if any(c in getattr(a, name) for c in "\r\n\0"):
            raise InvalidArgument(f"auth.{name}: contains CR, LF or NUL")
    return Credentials(
        username=a.username,
        password=a.password,
        auth=a.auth,
        identity_token=a.identity_token,
        registry_token=a.registry_token,
        server_address=a.server_address,
    )


def filesystem_usage(u: Usage) -> pb.FilesystemUsage:
    return pb.FilesystemUsage(
        timestamp=u.timestamp,
        fs_id=pb.FilesystemIdentifier(mountpoint=u.path),
        used_bytes=pb.UInt64Value(value=u.used_bytes),
        inodes_used=pb.UInt64Value(value=u.inodes_used),
    )


def list_filter(req: pb.ListImagesRequest | pb.StreamImagesRequest) -> str:
    """The image spec a List/Stream request filters by ("" for all)."""
    return req.filter.image.image if req.HasField("filter") else ""
