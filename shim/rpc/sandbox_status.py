"""PodSandboxStatus: answered from memory (the kubelet polls it)."""

from __future__ import annotations

import time

from podsandbox import namespaces
from podsandbox.types import PIN_KINDS
from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.rpc.registry import rpc
from shim.rpc.sandbox_convert import to_status, verbose_info
from shim.rpc.services import Services


@rpc("PodSandboxStatus")
async def pod_sandbox_status(
    d: Services, req: pb.PodSandboxStatusRequest
) -> pb.PodSandboxStatusResponse:
    if not req.pod_sandbox_id:
        raise InvalidArgument("pod_sandbox_id: required")
    rec = d.sandboxes.get(req.pod_sandbox_id)
    view = d.sandboxes.status_view(rec)
    resp = pb.PodSandboxStatusResponse(status=to_status(rec, view), timestamp=time.time_ns())
    if req.verbose:
        node = {k: namespaces.node_inode(k) for k in PIN_KINDS}
        resp.info.update(verbose_info(rec, view, node))
    return resp
