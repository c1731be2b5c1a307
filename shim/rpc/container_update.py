"""UpdateContainerResources: new limits through the OCI runtime's update."""

from __future__ import annotations

from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.rpc.container_convert import resources
from shim.rpc.registry import rpc
from shim.rpc.services import Services


@rpc("UpdateContainerResources")
async def update_container_resources(
    d: Services, req: pb.UpdateContainerResourcesRequest
) -> pb.UpdateContainerResourcesResponse:
    if not req.container_id:
        raise InvalidArgument("container_id: required")
    await d.containers.update_resources(req.container_id, resources(req.linux))
    return pb.UpdateContainerResourcesResponse()
