"""CreateContainer: the bundle (rootfs + OCI spec) in a ready pod."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.rpc.registry import rpc

if TYPE_CHECKING:
    from shim.daemon import Daemon


@rpc("CreateContainer")
async def create_container(
    d: Daemon, req: pb.CreateContainerRequest, ctx: object
) -> pb.CreateContainerResponse:
    if not req.pod_sandbox_id:
        raise InvalidArgument("pod_sandbox_id: required")
    if not req.HasField("config"):
        raise InvalidArgument("config: required")
    sc = req.config.linux.security_context
    if sc.HasField("run_as_group") and not sc.HasField("run_as_user") and not sc.run_as_username:
        # as the kubelet and containerd refuse it: a group with the image's user is ambiguous
        raise InvalidArgument(
            "config.linux.security_context.run_as_group: set without run_as_user or "
            "run_as_username")
    cid = await d.containers.create(req.pod_sandbox_id, req.config, req.sandbox_config)
    return pb.CreateContainerResponse(container_id=cid)
