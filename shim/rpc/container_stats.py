"""ContainerStats, ListContainerStats and StreamContainerStats.

Targets are taken from the in-memory index on the event loop; the counters (a few cgroup
files, the cached writable-layer walk) are read in a worker thread. The List calls report
running containers only, as containerd and CRI-O do.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from shim.containers.types import CState
from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.rpc.container_convert import matches
from shim.rpc.registry import rpc
from shim.rpc.streaming import chunks
from shim.stats.collector import ContainerTarget, container_target, for_daemon

if TYPE_CHECKING:
    from shim.daemon import Daemon


def _targets(d: Daemon, f: pb.ContainerStatsFilter | None) -> list[ContainerTarget]:
    running = CState.RUNNING.value
    return d.store.containers.scan(
        lambda r: container_target(r) if r.state == running and matches(r, f) else None)


async def select(d: Daemon, f: pb.ContainerStatsFilter | None) -> list[pb.ContainerStats]:
    targets = _targets(d, f)
    live = set(d.store.containers.ids())
    c = for_daemon(d)

    def work() -> list[pb.ContainerStats]:
        out = [c.container_stats(t) for t in targets]
        c.prune(live)
        return out

    return await asyncio.to_thread(work)


@rpc("ContainerStats")
async def container_stats(
    d: Daemon, req: pb.ContainerStatsRequest, ctx: object
) -> pb.ContainerStatsResponse:
    if not req.container_id:
        raise InvalidArgument("container_id: required")
    t = container_target(d.containers.get(req.container_id))  # NotFound when unknown
    stats = await asyncio.to_thread(for_daemon(d).container_stats, t)
    return pb.ContainerStatsResponse(stats=stats)


@rpc("ListContainerStats")
async def list_container_stats(
    d: Daemon, req: pb.ListContainerStatsRequest, ctx: object
) -> pb.ListContainerStatsResponse:
    f = req.filter if req.HasField("filter") else None
    return pb.ListContainerStatsResponse(stats=await select(d, f))


@rpc("StreamContainerStats")
async def stream_container_stats(
    d: Daemon, req: pb.StreamContainerStatsRequest, ctx: object
) -> AsyncIterator[pb.StreamContainerStatsResponse]:
    f = req.filter if req.HasField("filter") else None
    for chunk in chunks(await select(d, f)):
        yield pb.StreamContainerStatsResponse(container_stats=chunk)
