"""ListContainers and StreamContainers: filters applied to the in-memory index."""

from __future__ import annotations

from collections.abc import AsyncIterator

from shim.cri import api_pb2 as pb
from shim.rpc.container_convert import matches, to_container
from shim.rpc.registry import rpc
from shim.rpc.services import Services
from shim.rpc.streaming import chunks


def _select(d: Services, f: pb.ContainerFilter | None) -> list[pb.Container]:
    convert = d.store.containers.memo("cri", to_container)
    return d.store.containers.scan(lambda r: convert(r) if matches(r, f) else None)


def _serialised(d: Services) -> bytes:
    return pb.ListContainersResponse(containers=_select(d, None)).SerializeToString()


def _ready(d: Services, req: pb.ListContainersRequest) -> bytes | None:
    """The relist's answer, if the table has not changed since it was made (off the loop)."""
    return None if req.HasField("filter") else d.store.containers.prepared("ListContainers")


@rpc("ListContainers", ready=_ready)
async def list_containers(
    d: Services, req: pb.ListContainersRequest
) -> pb.ListContainersResponse | bytes:
    if not req.HasField("filter"):  # the kubelet's relist: made and serialised once per
        # table version (the server passes bytes through)
        return d.store.containers.answer("ListContainers", lambda: _serialised(d))
    return pb.ListContainersResponse(containers=_select(d, req.filter))


@rpc("StreamContainers")
async def stream_containers(
    d: Services, req: pb.StreamContainersRequest
) -> AsyncIterator[pb.StreamContainersResponse]:
    f = req.filter if req.HasField("filter") else None
    for chunk in chunks(_select(d, f)):
        yield pb.StreamContainersResponse(containers=chunk)
