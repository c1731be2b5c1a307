"""ListMetricDescriptors, ListPodSandboxMetrics and StreamPodSandboxMetrics: the
cAdvisor-compatible metrics of ready pods and their running containers (shim.stats.metrics),
read off the event loop, made CRI messages in stats_convert."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict

from podsandbox.types import State
from shim.containers.types import CState
from shim.containers.views import host_view
from shim.cri import api_pb2 as pb
from shim.rpc.registry import list_and_stream, rpc
from shim.rpc.services import Services
from shim.rpc.stats_convert import descriptors, metric
from shim.stats import metrics
from shim.stats.collector import cgroup_relpath
from shim.store import ContainerRecord


def _target(rec: ContainerRecord) -> metrics.MetricsTarget | None:
    if rec.state is not CState.RUNNING:
        return None
    v = host_view(rec)
    return metrics.MetricsTarget(
        id=rec.id, name=rec.name, image=rec.image, cgroup=cgroup_relpath(v.cgroup_path),
        upper=v.upper, started_at=rec.started_at, resources=dict(v.resources))


async def pod_metrics(d: Services, req: object) -> list[pb.PodSandboxMetrics]:
    pods = d.store.sandboxes.scan(lambda r: r if r.state is State.READY else None)
    by_pod: dict[str, list[metrics.MetricsTarget]] = defaultdict(list)
    for r in d.store.containers.list():
        t = _target(r)
        if t is not None:
            by_pod[r.sandbox_id].append(t)
    view = d.sandboxes.host_view
    plan = [(p.id, p.name, view(p).netns, by_pod.get(p.id, [])) for p in pods]
    collector = d.stats

    def work() -> list[pb.PodSandboxMetrics]:
        h, fs = collector.hierarchies, collector.fs_mountpoint
        out = []
        for pod_id, name, netns, targets in plan:
            pm = pb.PodSandboxMetrics(pod_sandbox_id=pod_id)
            if netns:
                with contextlib.suppress(OSError):  # the pod is going away
                    pm.metrics.extend(metric(s) for s in metrics.sample_network(pod_id, name,
                                                                                 netns))
            for t in targets:
                pm.container_metrics.append(pb.ContainerMetrics(
                    container_id=t.id,
                    metrics=[metric(s) for s in metrics.sample_container(t, h, fs)]))
            out.append(pm)
        return out

    return await asyncio.to_thread(work)


@rpc("ListMetricDescriptors")
async def list_metric_descriptors(
    d: Services, req: pb.ListMetricDescriptorsRequest
) -> pb.ListMetricDescriptorsResponse:
    return pb.ListMetricDescriptorsResponse(descriptors=descriptors())


# Their requests carry nothing: every ready pod is reported.
list_and_stream(
    "ListPodSandboxMetrics", "StreamPodSandboxMetrics", pod_metrics,
    lambda items: pb.ListPodSandboxMetricsResponse(pod_metrics=items),
    lambda chunk: pb.StreamPodSandboxMetricsResponse(pod_sandbox_metrics=chunk))
