"""RemoveContainer: stop if running, then delete rootfs, bundle and monitor files."""

from __future__ import annotations

from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.rpc.registry import rpc
from shim.rpc.services import Services


@rpc("RemoveContainer")
async def remove_container(
    d: Services, req: pb.RemoveContainerRequest
) -> pb.RemoveContainerResponse:
    if not req.container_id:
        raise InvalidArgument("container_id: required")
    await d.containers.remove(req.container_id)
    return pb.RemoveContainerResponse()
