"""ListPodSandbox and StreamPodSandboxes: filters applied to the in-memory index."""

from __future__ import annotations

from collections.abc import AsyncIterator

from shim.cri import api_pb2 as pb
from shim.rpc.registry import rpc
from shim.rpc.sandbox_convert import matches, to_pod_sandbox
from shim.rpc.services import Services
from shim.rpc.streaming import chunks


def _select(d: Services, f: pb.PodSandboxFilter | None) -> list[pb.PodSandbox]:
    convert = d.store.sandboxes.memo("cri", to_pod_sandbox)
    return d.store.sandboxes.scan(lambda r: convert(r) if matches(r, f) else None)


def _serialised(d: Services) -> bytes:
    return pb.ListPodSandboxResponse(items=_select(d, None)).SerializeToString()


def _ready(d: Services, req: pb.ListPodSandboxRequest) -> bytes | None:
    """The relist's answer, if the table has not changed since it was made (off the loop)."""
    return None if req.HasField("filter") else d.store.sandboxes.prepared("ListPodSandbox")


@rpc("ListPodSandbox", ready=_ready)
async def list_pod_sandbox(
    d: Services, req: pb.ListPodSandboxRequest
) -> pb.ListPodSandboxResponse | bytes:
    if not req.HasField("filter"):  # the kubelet's relist: made and serialised once per
        # table version (the server passes bytes through)
        return d.store.sandboxes.answer("ListPodSandbox", lambda: _serialised(d))
    return pb.ListPodSandboxResponse(items=_select(d, req.filter))


@rpc("StreamPodSandboxes")
async def stream_pod_sandboxes(
    d: Services, req: pb.StreamPodSandboxesRequest
) -> AsyncIterator[pb.StreamPodSandboxesResponse]:
    f = req.filter if req.HasField("filter") else None
    for chunk in chunks(_select(d, f)):
        yield pb.StreamPodSandboxesResponse(pod_sandboxes=chunk)
