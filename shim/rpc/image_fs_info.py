"""ImageFsInfo: bytes and inodes of the image store and of the containers' writable layers."""

from __future__ import annotations

from shim.cri import api_pb2 as pb
from shim.rpc.image_convert import filesystem_usage
from shim.rpc.registry import rpc
from shim.rpc.services import Services


@rpc("ImageFsInfo")
async def image_fs_info(
    d: Services, req: pb.ImageFsInfoRequest
) -> pb.ImageFsInfoResponse:
    info = await d.images.fs_info()
    return pb.ImageFsInfoResponse(
        image_filesystems=[filesystem_usage(info.image)],
        container_filesystems=[filesystem_usage(info.container)],
    )
