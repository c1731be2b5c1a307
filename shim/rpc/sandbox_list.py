"""ListPodSandbox and StreamPodSandboxes: filters applied to the in-memory index."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from shim.cri import api_pb2 as pb
from shim.rpc.registry import rpc
from shim.rpc.sandbox_convert import matches, to_pod_sandbox
from shim.rpc.streaming import chunks

if TYPE_CHECKING:
    from shim.daemon import Daemon


def _select(d: Daemon, f: pb.PodSandboxFilter | None) -> list[pb.PodSandbox]:
    convert = d.store.sandboxes.memo("cri", to_pod_sandbox)
    return d.store.sandboxes.scan(lambda r: convert(r) if matches(r, f) else None)


@rpc("ListPodSandbox")
async def list_pod_sandbox(
    d: Daemon, req: pb.ListPodSandboxRequest, ctx: object
) -> pb.ListPodSandboxResponse:
    f = req.filter if req.HasField("filter") else None
    return pb.ListPodSandboxResponse(items=_select(d, f))


@rpc("StreamPodSandboxes")
async def stream_pod_sandboxes(
    d: Daemon, req: pb.StreamPodSandboxesRequest, ctx: object
) -> AsyncIterator[pb.StreamPodSandboxesResponse]:
    f = req.filter if req.HasField("filter") else None
    for chunk in chunks(_select(d, f)):
        yield pb.StreamPodSandboxesResponse(pod_sandboxes=chunk)
