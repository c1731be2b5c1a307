"""RemovePodSandbox: stop if needed, then unpin namespaces and delete every file of the pod."""

from __future__ import annotations

from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.rpc.registry import rpc
from shim.rpc.services import Services


@rpc("RemovePodSandbox")
async def remove_pod_sandbox(
    d: Services, req: pb.RemovePodSandboxRequest
) -> pb.RemovePodSandboxResponse:
    if not req.pod_sandbox_id:
        raise InvalidArgument("pod_sandbox_id: required")
    await d.sandboxes.remove(req.pod_sandbox_id, d.containers)  # its containers first
    return pb.RemovePodSandboxResponse()
