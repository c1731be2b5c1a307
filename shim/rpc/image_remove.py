"""RemoveImage: by id, tag or digest; one of several tags only untags; absent is success."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.rpc.registry import rpc

if TYPE_CHECKING:
    from shim.daemon import Daemon


@rpc("RemoveImage")
async def remove_image(
    d: Daemon, req: pb.RemoveImageRequest, ctx: object
) -> pb.RemoveImageResponse:
    spec = req.image.image
    if not spec:
        raise InvalidArgument("RemoveImage: image.image is empty")
    await d.images.remove(spec)
    return pb.RemoveImageResponse()
