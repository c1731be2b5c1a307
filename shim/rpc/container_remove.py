"""RemoveContainer: stop if running, then delete rootfs, bundle and monitor files."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.rpc.registry import rpc

if TYPE_CHECKING:
    from shim.daemon import Daemon


@rpc("RemoveContainer")
async def remove_container(
    d: Daemon, req: pb.RemoveContainerRequest, ctx: object
) -> pb.RemoveContainerResponse:
    if not req.container_id:
        raise InvalidArgument("container_id: required")
    await d.containers.remove(req.container_id)
    return pb.RemoveContainerResponse()
