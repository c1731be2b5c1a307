"""ReopenContainerLog: the monitor reopens the log file after the kubelet rotated it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.rpc.registry import rpc

if TYPE_CHECKING:
    from shim.daemon import Daemon


@rpc("ReopenContainerLog")
async def reopen_container_log(
    d: Daemon, req: pb.ReopenContainerLogRequest, ctx: object
) -> pb.ReopenContainerLogResponse:
    if not req.container_id:
        raise InvalidArgument("container_id: required")
    await d.containers.reopen_log(req.container_id)
    return pb.ReopenContainerLogResponse()
