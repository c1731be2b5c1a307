"""ContainerStats, ListContainerStats and StreamContainerStats.

Targets are taken from the in-memory index on the event loop; the counters (a few cgroup
files, the cached writable-layer walk) are read in a worker thread by the daemon's collector,
and the samples become CRI messages in stats_convert. The List calls report running
containers only, as containerd and CRI-O do.
"""

from __future__ import annotations

import asyncio

from shim.containers.types import CState
from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.rpc import stats_convert
from shim.rpc.container_convert import matches
from shim.rpc.registry import list_and_stream, rpc
from shim.rpc.services import Services
from shim.stats.collector import container_target
from shim.stats.samples import ContainerTarget


def _targets(d: Services, f: pb.ContainerStatsFilter | None) -> list[ContainerTarget]:
    return d.store.containers.scan(
        lambda r: container_target(r) if r.state is CState.RUNNING and matches(r, f) else None)


async def select(
    d: Services, req: pb.ListContainerStatsRequest | pb.StreamContainerStatsRequest
) -> list[pb.ContainerStats]:
    targets = _targets(d, req.filter if req.HasField("filter") else None)
    live = set(d.store.containers.ids())
    c = d.stats

    def work() -> list[pb.ContainerStats]:
        out = [stats_convert.container_stats(c.container_stats(t)) for t in targets]
        c.prune(live)
        return out

    return await asyncio.to_thread(work)


@rpc("ContainerStats")
async def container_stats(
    d: Services, req: pb.ContainerStatsRequest
) -> pb.ContainerStatsResponse:
    if not req.container_id:
        raise InvalidArgument("container_id: required")
    t = container_target(d.containers.get(req.container_id))  # NotFound when unknown

    def work() -> pb.ContainerStats:
        return stats_convert.container_stats(d.stats.container_stats(t))

    return pb.ContainerStatsResponse(stats=await asyncio.to_thread(work))


list_and_stream(
    "ListContainerStats", "StreamContainerStats", select,
    lambda items: pb.ListContainerStatsResponse(stats=items),
    lambda chunk: pb.StreamContainerStatsResponse(container_stats=chunk))
