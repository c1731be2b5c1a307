"""StopContainer: the stop signal, then SIGKILL after ``timeout`` seconds. Idempotent."""

from __future__ import annotations

from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.rpc.registry import rpc
from shim.rpc.services import Services


@rpc("StopContainer")
async def stop_container(
    d: Services, req: pb.StopContainerRequest
) -> pb.StopContainerResponse:
    if not req.container_id:
        raise InvalidArgument("container_id: required")
    if req.timeout < 0:
        raise InvalidArgument(f"timeout: must be >= 0 (got {req.timeout})")
    await d.containers.stop(req.container_id, req.timeout)
    return pb.StopContainerResponse()
