"""StopPodSandbox: containers stopped, network torn down, pause-holder ended. Idempotent."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.rpc.registry import rpc

if TYPE_CHECKING:
    from shim.daemon import Daemon


@rpc("StopPodSandbox")
async def stop_pod_sandbox(
    d: Daemon, req: pb.StopPodSandboxRequest, ctx: object
) -> pb.StopPodSandboxResponse:
    if not req.pod_sandbox_id:
        raise InvalidArgument("pod_sandbox_id: required")
    await d.sandboxes.stop(req.pod_sandbox_id)
    return pb.StopPodSandboxResponse()
