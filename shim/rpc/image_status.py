"""ImageStatus: one image from memory; unknown → an empty response, not an error."""

from __future__ import annotations

from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.rpc.image_convert import to_image
from shim.rpc.registry import rpc
from shim.rpc.services import Services


@rpc("ImageStatus")
async def image_status(
    d: Services, req: pb.ImageStatusRequest
) -> pb.ImageStatusResponse:
    spec = req.image.image
    if not spec:
        raise InvalidArgument("ImageStatus: image.image is empty")
    found = d.images.status(spec)
    if found is None:
        return pb.ImageStatusResponse()
    resp = pb.ImageStatusResponse(image=d.images.catalog.memo("cri", to_image)(found))
    if req.verbose:
        resp.info.update(d.images.verbose_info(found.id))
    return resp
