"""RemovePodSandbox: stop if needed, then unpin namespaces and delete every file of the pod."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.rpc.registry import rpc

if TYPE_CHECKING:
    from shim.daemon import Daemon


@rpc("RemovePodSandbox")
async def remove_pod_sandbox(
    d: Daemon, req: pb.RemovePodSandboxRequest, ctx: object
) -> pb.RemovePodSandboxResponse:
    if not req.pod_sandbox_id:
        raise InvalidArgument("pod_sandbox_id: required")
    await d.sandboxes.remove(req.pod_sandbox_id)
    return pb.RemovePodSandboxResponse()
