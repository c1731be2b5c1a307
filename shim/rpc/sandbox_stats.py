"""PodSandboxStats, ListPodSandboxStats and StreamPodSandboxStats.

A pod's CPU, memory and process count come from its cgroup parent (the pod as a whole, as the
kubelet lays pods out), or, when that parent is shared with other pods (Tether's default
parent), from the sum of the pod's own cgroups. Network counters come from the pod's network
namespace; ``containers`` holds its running containers' stats. The List calls report ready
pods only, as containerd does.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from podsandbox.types import State
from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.rpc.registry import rpc
from shim.rpc.sandbox_convert import matches
from shim.rpc.streaming import chunks
from shim.stats.collector import (
    ContainerTarget,
    PodTarget,
    container_target,
    for_daemon,
    pod_target,
    shared_parents,
)
from shim.store import SandboxRecord

if TYPE_CHECKING:
    from shim.daemon import Daemon


def _targets(d: Daemon, want: list[SandboxRecord]) -> tuple[list[PodTarget], set[str]]:
    by_pod: dict[str, list[ContainerTarget]] = defaultdict(list)
    ids = {r.id for r in want}
    for t in d.store.containers.scan(
            lambda r: container_target(r) if r.sandbox_id in ids else None):
        by_pod[t.sandbox_id].append(t)
    pods = [pod_target(r, by_pod[r.id]) for r in want]
    parents = d.store.sandboxes.scan(
        lambda r: str(r.details.get("cgroup", "")).rsplit("/", 1)[0]
        if "/" in str(r.details.get("cgroup", "")) else "")
    return pods, shared_parents(parents, d.sandboxes.own_parent)


async def _collect(d: Daemon, want: list[SandboxRecord]) -> list[pb.PodSandboxStats]:
    pods, shared = _targets(d, want)
    live = set(d.store.containers.ids())
    c = for_daemon(d)

    def work() -> list[pb.PodSandboxStats]:
        out = [c.pod_stats(t, shared) for t in pods]
        c.prune(live)
        return out

    return await asyncio.to_thread(work)


async def select(d: Daemon, f: pb.PodSandboxStatsFilter | None) -> list[pb.PodSandboxStats]:
    want = d.store.sandboxes.scan(
        lambda r: r if r.state == State.READY.value and matches(r, f) else None)
    return await _collect(d, want)


@rpc("PodSandboxStats")
async def pod_sandbox_stats(
    d: Daemon, req: pb.PodSandboxStatsRequest, ctx: object
) -> pb.PodSandboxStatsResponse:
    if not req.pod_sandbox_id:
        raise InvalidArgument("pod_sandbox_id: required")
    rec = d.sandboxes.get(req.pod_sandbox_id)  # NotFound when unknown
    stats = await _collect(d, [rec])
    return pb.PodSandboxStatsResponse(stats=stats[0])


@rpc("ListPodSandboxStats")
async def list_pod_sandbox_stats(
    d: Daemon, req: pb.ListPodSandboxStatsRequest, ctx: object
) -> pb.ListPodSandboxStatsResponse:
    f = req.filter if req.HasField("filter") else None
    return pb.ListPodSandboxStatsResponse(stats=await select(d, f))


@rpc("StreamPodSandboxStats")
async def stream_pod_sandbox_stats(
    d: Daemon, req: pb.StreamPodSandboxStatsRequest, ctx: object
) -> AsyncIterator[pb.StreamPodSandboxStatsResponse]:
    f = req.filter if req.HasField("filter") else None
    for chunk in chunks(await select(d, f)):
        yield pb.StreamPodSandboxStatsResponse(pod_sandbox_stats=chunk)
