"""ContainerStatus: answered from memory (the kubelet polls it)."""

from __future__ import annotations

import asyncio

from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.rpc.container_convert import to_status, verbose_info
from shim.rpc.registry import rpc
from shim.rpc.services import Services


@rpc("ContainerStatus")
async def container_status(
    d: Services, req: pb.ContainerStatusRequest
) -> pb.ContainerStatusResponse:
    if not req.container_id:
        raise InvalidArgument("container_id: required")
    rec = d.containers.get(req.container_id)
    resp = pb.ContainerStatusResponse(status=to_status(rec))
    if req.verbose:
        spec = await asyncio.to_thread(d.containers.runtime_spec, rec)
        resp.info.update(verbose_info(rec, spec))
    return resp
