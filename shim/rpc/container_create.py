"""CreateContainer: the bundle (rootfs + OCI spec) in a ready pod."""

from __future__ import annotations

import dataclasses

from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.rpc import namespace_policy
from shim.rpc.container_convert import container_spec
from shim.rpc.registry import rpc
from shim.rpc.services import Services


@rpc("CreateContainer")
async def create_container(
    d: Services, req: pb.CreateContainerRequest
) -> pb.CreateContainerResponse:
    if not req.pod_sandbox_id:
        raise InvalidArgument("pod_sandbox_id: required")
    if not req.HasField("config"):
        raise InvalidArgument("config: required")
    spec = container_spec(req.config, req.sandbox_config)
    # before any side effect: a denial leaves nothing behind
    subject, granted = namespace_policy.check_container(d, req.pod_sandbox_id, spec)
    cid = ""
    try:
        cid = await d.containers.create(req.pod_sandbox_id, spec)
    finally:
        if subject is not None and granted:
            d.nspolicy.record("CreateContainer",
                              dataclasses.replace(subject, container_id=cid), granted)
    return pb.CreateContainerResponse(container_id=cid)
