"""StopPodSandbox: containers stopped, network torn down, pause-holder ended. Idempotent."""

from __future__ import annotations

from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.rpc.registry import rpc
from shim.rpc.services import Services


@rpc("StopPodSandbox")
async def stop_pod_sandbox(
    d: Services, req: pb.StopPodSandboxRequest
) -> pb.StopPodSandboxResponse:
    if not req.pod_sandbox_id:
        raise InvalidArgument("pod_sandbox_id: required")
    await d.sandboxes.stop(req.pod_sandbox_id, d.containers)  # its containers first
    return pb.StopPodSandboxResponse()
