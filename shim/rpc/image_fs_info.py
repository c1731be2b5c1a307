"""ImageFsInfo: bytes and inodes of the image store and of the containers' writable layers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shim.cri import api_pb2 as pb
from shim.images.fsusage import Usage
from shim.rpc.registry import rpc

if TYPE_CHECKING:
    from shim.daemon import Daemon


def _usage(u: Usage) -> pb.FilesystemUsage:
    return pb.FilesystemUsage(
        timestamp=u.timestamp,
        fs_id=pb.FilesystemIdentifier(mountpoint=u.path),
        used_bytes=pb.UInt64Value(value=u.used_bytes),
        inodes_used=pb.UInt64Value(value=u.inodes_used),
    )


@rpc("ImageFsInfo")
async def image_fs_info(
    d: Daemon, req: pb.ImageFsInfoRequest, ctx: object
) -> pb.ImageFsInfoResponse:
    info = await d.images.fs_info()
    return pb.ImageFsInfoResponse(
        image_filesystems=[_usage(info.image)], container_filesystems=[_usage(info.container)]
    )
