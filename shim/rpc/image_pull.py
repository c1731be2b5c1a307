"""PullImage: pull an image (credentials from the request or the global auth file)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.images.auth import Credentials
from shim.rpc.registry import rpc

if TYPE_CHECKING:
    from shim.daemon import Daemon


def credentials(a: pb.AuthConfig) -> Credentials:
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
