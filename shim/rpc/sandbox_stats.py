"""PodSandboxStats, ListPodSandboxStats and StreamPodSandboxStats.

A pod's CPU, memory and process count come from its cgroup parent (the pod as a whole, as the
kubelet lays pods out), or, when that parent is shared with other pods (Tether's default
parent), from the sum of the pod's own cgroups. Network counters come from the pod's network
namespace; ``containers`` holds its running containers' stats. Where a pod lives (cgroups,
network namespace) is the sandbox manager's to tell (``host_view``). The List calls report
ready pods only, as containerd does.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from podsandbox.types import State
from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.rpc import stats_convert
from shim.rpc.registry import list_and_stream, rpc
from shim.rpc.sandbox_convert import matches
from shim.rpc.services import Services
from shim.stats.collector import container_target, pod_target, shared_parents
from shim.stats.samples import ContainerTarget, PodTarget
from shim.store import SandboxRecord


def _targets(d: Services, want: list[SandboxRecord]) -> tuple[list[PodTarget], set[str]]:
    by_pod: dict[str, list[ContainerTarget]] = defaultdict(list)
    ids = {r.id for r in want}
    for t in d.store.containers.scan(
            lambda r: container_target(r) if r.sandbox_id in ids else None):
        by_pod[t.sandbox_id].append(t)
    view = d.sandboxes.host_view
    pods = [pod_target(r, view(r), by_pod[r.id]) for r in want]
    parents = d.store.sandboxes.scan(lambda r: view(r).parent)
    return pods, shared_parents(parents, d.sandboxes.own_parent)


async def _collect(d: Services, want: list[SandboxRecord]) -> list[pb.PodSandboxStats]:
    pods, shared = _targets(d, want)
    live = set(d.store.containers.ids())
    c = d.stats

    def work() -> list[pb.PodSandboxStats]:
        out = [stats_convert.pod_stats(c.pod_stats(t, shared)) for t in pods]
        c.prune(live)
        return out

    return await asyncio.to_thread(work)


async def select(
    d: Services, req: pb.ListPodSandboxStatsRequest | pb.StreamPodSandboxStatsRequest
) -> list[pb.PodSandboxStats]:
    f = req.filter if req.HasField("filter") else None
    want = d.store.sandboxes.scan(
        lambda r: r if r.state is State.READY and matches(r, f) else None)
    return await _collect(d, want)


@rpc("PodSandboxStats")
async def pod_sandbox_stats(
    d: Services, req: pb.PodSandboxStatsRequest
) -> pb.PodSandboxStatsResponse:
    if not req.pod_sandbox_id:
        raise InvalidArgument("pod_sandbox_id: required")
    rec = d.sandboxes.get(req.pod_sandbox_id)  # NotFound when unknown
    stats = await _collect(d, [rec])
    return pb.PodSandboxStatsResponse(stats=stats[0])


list_and_stream(
    "ListPodSandboxStats", "StreamPodSandboxStats", select,
    lambda items: pb.ListPodSandboxStatsResponse(stats=items),
    lambda chunk: pb.StreamPodSandboxStatsResponse(pod_sandbox_stats=chunk))
