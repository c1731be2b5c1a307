"""ListMetricDescriptors, ListPodSandboxMetrics and StreamPodSandboxMetrics: the
cAdvisor-compatible metrics of ready pods and their running containers (shim.stats.metrics),
read off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from podsandbox.types import Mode, SandboxDetails, State
from shim.containers.types import ContainerDetails, CState
from shim.cri import api_pb2 as pb
from shim.rpc.registry import rpc
from shim.rpc.streaming import chunks
from shim.stats import metrics
from shim.stats.collector import cgroup_relpath, for_daemon
from shim.store import ContainerRecord

if TYPE_CHECKING:
    from shim.daemon import Daemon

_KIND = {metrics.COUNTER: pb.COUNTER, metrics.GAUGE: pb.GAUGE}


def _metric(s: metrics.Sample) -> pb.Metric:
    return pb.Metric(name=s.name, timestamp=s.timestamp,
                     metric_type=_KIND[metrics.BY_NAME[s.name].kind],
                     label_values=list(s.labels), value=pb.UInt64Value(value=s.value))


def _target(rec: ContainerRecord) -> metrics.MetricsTarget | None:
    if rec.state != CState.RUNNING.value:
        return None
    d = ContainerDetails.from_dict(rec.details)
    return metrics.MetricsTarget(
        id=rec.id, name=rec.name, image=rec.image, cgroup=cgroup_relpath(d.cgroup_path),
        upper=f"{d.container_dir}/upper" if d.container_dir else "",
        started_at=rec.started_at, resources=dict(d.resources))


async def pod_metrics(d: Daemon) -> list[pb.PodSandboxMetrics]:
    pods = d.store.sandboxes.scan(lambda r: r if r.state == State.READY.value else None)
    by_pod: dict[str, list[metrics.MetricsTarget]] = defaultdict(list)
    for r in d.store.containers.list():
        t = _target(r)
        if t is not None:
            by_pod[r.sandbox_id].append(t)
    plan = []
    for p in pods:
        pd = SandboxDetails.from_dict(p.details)
        netns = pd.pins.get("net") if pd.modes.get("net") == Mode.POD.value else None
        plan.append((p.id, p.name, netns, by_pod.get(p.id, [])))
    collector = for_daemon(d)

    def work() -> list[pb.PodSandboxMetrics]:
        h, fs = collector.hierarchies, collector.fs_mountpoint
        out = []
        for pod_id, name, netns, targets in plan:
            pm = pb.PodSandboxMetrics(pod_sandbox_id=pod_id)
            if netns:
                with contextlib.suppress(OSError):  # the pod is going away
                    pm.metrics.extend(_metric(s) for s in metrics.sample_network(pod_id, name,
                                                                                 netns))
            for t in targets:
                pm.container_metrics.append(pb.ContainerMetrics(
                    container_id=t.id,
                    metrics=[_metric(s) for s in metrics.sample_container(t, h, fs)]))
            out.append(pm)
        return out

    return await asyncio.to_thread(work)


@rpc("ListMetricDescriptors")
async def list_metric_descriptors(
    d: Daemon, req: pb.ListMetricDescriptorsRequest, ctx: object
) -> pb.ListMetricDescriptorsResponse:
    return pb.ListMetricDescriptorsResponse(descriptors=[
        pb.MetricDescriptor(name=m.name, help=m.help, label_keys=list(m.label_keys))
        for m in metrics.DESCRIPTORS])


@rpc("ListPodSandboxMetrics")
async def list_pod_sandbox_metrics(
    d: Daemon, req: pb.ListPodSandboxMetricsRequest, ctx: object
) -> pb.ListPodSandboxMetricsResponse:
    return pb.ListPodSandboxMetricsResponse(pod_metrics=await pod_metrics(d))


@rpc("StreamPodSandboxMetrics")
async def stream_pod_sandbox_metrics(
    d: Daemon, req: pb.StreamPodSandboxMetricsRequest, ctx: object
) -> AsyncIterator[pb.StreamPodSandboxMetricsResponse]:
    for chunk in chunks(await pod_metrics(d)):
        yield pb.StreamPodSandboxMetricsResponse(pod_sandbox_metrics=chunk)
