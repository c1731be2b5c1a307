"""StartContainer: conmon + the OCI runtime start the process."""

from __future__ import annotations

from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.rpc.registry import rpc
from shim.rpc.services import Services


@rpc("StartContainer")
async def start_container(
    d: Services, req: pb.StartContainerRequest
) -> pb.StartContainerResponse:
    if not req.container_id:
        raise InvalidArgument("container_id: required")
    await d.containers.start(req.container_id)
    return pb.StartContainerResponse()
