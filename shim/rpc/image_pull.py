"""PullImage: pull an image (credentials from the request or the global auth file)."""

from __future__ import annotations

from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.rpc.image_convert import credentials
from shim.rpc.registry import rpc
from shim.rpc.services import Services


@rpc("PullImage")
async def pull_image(d: Services, req: pb.PullImageRequest) -> pb.PullImageResponse:
    image = req.image.image
    if not image:
        raise InvalidArgument("PullImage: image.image is empty")
    image_ref = await d.images.pull(image, credentials(req.auth))
    return pb.PullImageResponse(image_ref=image_ref)
