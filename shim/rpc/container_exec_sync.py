"""ExecSync: a command in a running container; its output and exit code."""

from __future__ import annotations

from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.rpc.registry import rpc
from shim.rpc.services import Services


@rpc("ExecSync")
async def exec_sync(d: Services, req: pb.ExecSyncRequest) -> pb.ExecSyncResponse:
    if not req.container_id:
        raise InvalidArgument("container_id: required")
    if req.timeout < 0:
        raise InvalidArgument(f"timeout: must be >= 0 (got {req.timeout})")
    res = await d.containers.exec_sync(req.container_id, list(req.cmd), float(req.timeout))
    return pb.ExecSyncResponse(stdout=res.stdout, stderr=res.stderr, exit_code=res.exit_code)
