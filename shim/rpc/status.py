"""Status: RuntimeReady and NetworkReady, plus the effective config when verbose."""

from __future__ import annotations

import json

from shim.cri import api_pb2 as pb
from shim.rpc.registry import rpc
from shim.rpc.services import Services


@rpc("Status")
async def status(d: Services, req: pb.StatusRequest) -> pb.StatusResponse:
    runtime_ok, runtime_reason, runtime_msg = d.runtime_ready()
    net_ok, net_msg = await d.network_ready()
    conditions = [
        pb.RuntimeCondition(
            type="RuntimeReady", status=runtime_ok, reason=runtime_reason, message=runtime_msg
        ),
        pb.RuntimeCondition(
            type="NetworkReady",
            status=net_ok,
            reason="" if net_ok else "NetworkPluginNotReady",
            message="" if net_ok else net_msg,
        ),
    ]
    resp = pb.StatusResponse(
        status=pb.RuntimeStatus(conditions=conditions),
        # Strict is honoured when the container's groups are resolved (shim.oci.users)
        features=pb.RuntimeFeatures(supplemental_groups_policy=True),
    )
    for name in sorted(d.features):
        f = d.features[name]
        resp.runtime_handlers.append(pb.RuntimeHandler(
            name=name,
            features=pb.RuntimeHandlerFeatures(
                recursive_read_only_mounts=f.recursive_read_only_mounts,
                user_namespaces=f.user_namespaces),
        ))
    if req.verbose:
        resp.info["config"] = json.dumps(d.config.to_dict(), sort_keys=True)
    return resp
