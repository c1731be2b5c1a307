"""PortForward: a URL on the streaming server for connections to ports inside the pod's
network namespace (shim.streaming)."""

from __future__ import annotations

from podsandbox.types import State
from shim.cri import api_pb2 as pb
from shim.errors import FailedPrecondition, InvalidArgument
from shim.rpc.registry import rpc
from shim.rpc.services import Services
from shim.streaming.server import PortForwardTarget


@rpc("PortForward")
async def port_forward(d: Services, req: pb.PortForwardRequest) -> pb.PortForwardResponse:
    if not req.pod_sandbox_id:
        raise InvalidArgument("pod_sandbox_id: required")
    for i, p in enumerate(req.port):
        if not 0 < p < 65536:
            raise InvalidArgument(f"port[{i}]: {p} out of range")
    rec = d.sandboxes.get(req.pod_sandbox_id)
    if rec.state is not State.READY:
        raise FailedPrecondition(f"pod sandbox {rec.id} is not ready")
    netns = d.sandboxes.host_view(rec).netns or ""  # "" when the pod has the node's
    target = PortForwardTarget(rec.id, netns, tuple(req.port))
    return pb.PortForwardResponse(url=d.streaming.url("portforward", target))
