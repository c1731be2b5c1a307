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


@rpc("ListPodSandbox")
async def list_pod_sandbox(
    d: Services, req: pb.ListPodSandboxRequest, ctx: object
) -> pb.ListPodSandboxResponse:
    if not req.HasField("filter"):  # the kubelet's relist: one response per table version
        return d.store.sandboxes.answer(
            "ListPodSandbox", lambda: pb.ListPodSandboxResponse(items=_select(d, None)))
    return pb.ListPodSandboxResponse(items=_select(d, req.filter))


@rpc("StreamPodSandboxes")
async def stream_pod_sandboxes(
    d: Services, req: pb.StreamPodSandboxesRequest, ctx: object
) -> AsyncIterator[pb.StreamPodSandboxesResponse]:
    f = req.filter if req.HasField("filter") else None
    for chunk in chunks(_select(d, f)):
        yield pb.StreamPodSandboxesResponse(pod_sandboxes=chunk)
