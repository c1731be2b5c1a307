"""ListImages and StreamImages: from memory, optionally filtered by an image spec."""

from __future__ import annotations

from collections.abc import AsyncIterator

from shim.cri import api_pb2 as pb
from shim.rpc.image_convert import list_filter, to_image
from shim.rpc.registry import rpc
from shim.rpc.services import Services

STREAM_CHUNK = 100


def _select(d: Services, spec: str) -> list[pb.Image]:
    convert = d.images.catalog.memo("cri", to_image)
    return [convert(s) for s in d.images.list_images(spec)]


@rpc("ListImages")
async def list_images(d: Services, req: pb.ListImagesRequest) -> pb.ListImagesResponse:
    return pb.ListImagesResponse(images=_select(d, list_filter(req)))


@rpc("StreamImages")
async def stream_images(
    d: Services, req: pb.StreamImagesRequest
) -> AsyncIterator[pb.StreamImagesResponse]:
    images = _select(d, list_filter(req))
    for i in range(0, len(images), STREAM_CHUNK):
        yield pb.StreamImagesResponse(images=images[i : i + STREAM_CHUNK])
