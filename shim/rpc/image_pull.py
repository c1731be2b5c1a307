"""PullImage: pull an image (credentials from the request or the global auth file)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.images.auth import Credentials
from shim.rpc.registry import rpc

if TYPE_CHECKING:
    from shim.daemon import Daemon


_AUTH_FIELDS = ("username", "password", "auth", "identity_token", "registry_token",
                "server_address")


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


@rpc("PullImage")
async def pull_image(d: Daemon, req: pb.PullImageRequest, ctx: object) -> pb.PullImageResponse:
    image = req.image.image
    if not image:
        raise InvalidArgument("PullImage: image.image is empty")
    image_ref = await d.images.pull(image, credentials(req.auth))
    return pb.PullImageResponse(image_ref=image_ref)
