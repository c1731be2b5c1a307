"""ReopenContainerLog: the monitor reopens the log file after the kubelet rotated it."""

from __future__ import annotations

from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.rpc.registry import rpc
from shim.rpc.services import Services


@rpc("ReopenContainerLog")
async def reopen_container_log(
    d: Services, req: pb.ReopenContainerLogRequest
) -> pb.ReopenContainerLogResponse:
    if not req.container_id:
        raise InvalidArgument("container_id: required")
    await d.containers.reopen_log(req.container_id)
    return pb.ReopenContainerLogResponse()
