"""RemoveImage: by id, tag or digest; one of several tags only untags; absent is success."""

from __future__ import annotations

from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.rpc.registry import rpc
from shim.rpc.services import Services


@rpc("RemoveImage")
async def remove_image(
    d: Services, req: pb.RemoveImageRequest
) -> pb.RemoveImageResponse:
    spec = req.image.image
    if not spec:
        raise InvalidArgument("RemoveImage: image.image is empty")
    await d.images.remove(spec)
    return pb.RemoveImageResponse()
