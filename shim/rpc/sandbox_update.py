"""UpdatePodSandboxResources: in-place pod resize of the pod-level cgroup (v1 and v2)."""

from __future__ import annotations

from podsandbox.cgroups import PodLimits
from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.oci.resources import CFS_MAX_PERIOD_US, CFS_MIN_US, MIN_MEMORY_LIMIT
from shim.rpc.registry import rpc
from shim.rpc.services import Services


def limits_from(res: pb.LinuxContainerResources) -> PodLimits:
    f = "resources"
    if res.memory_limit_in_bytes < 0 or 0 < res.memory_limit_in_bytes < MIN_MEMORY_LIMIT:
        raise InvalidArgument(f"{f}.memory_limit_in_bytes: {res.memory_limit_in_bytes} is "
                              f"negative or below {MIN_MEMORY_LIMIT}")
    if res.cpu_shares < 0 or res.cpu_shares > 262144:
        raise InvalidArgument(f"{f}.cpu_shares: {res.cpu_shares} is outside 0..262144")
    if res.cpu_period and not CFS_MIN_US <= res.cpu_period <= CFS_MAX_PERIOD_US:
        raise InvalidArgument(f"{f}.cpu_period: {res.cpu_period} is outside "
                              f"{CFS_MIN_US}..{CFS_MAX_PERIOD_US}")
    if res.cpu_quota < -1 or 0 < res.cpu_quota < CFS_MIN_US:
        raise InvalidArgument(f"{f}.cpu_quota: {res.cpu_quota} is below {CFS_MIN_US} "
                              "(-1 or 0: no quota)")
    return PodLimits(memory_limit=res.memory_limit_in_bytes, cpu_shares=res.cpu_shares,
                     cpu_quota=res.cpu_quota, cpu_period=res.cpu_period)


@rpc("UpdatePodSandboxResources")
async def update_pod_sandbox_resources(
    d: Services, req: pb.UpdatePodSandboxResourcesRequest
) -> pb.UpdatePodSandboxResourcesResponse:
    if not req.pod_sandbox_id:
        raise InvalidArgument("pod_sandbox_id: required")
    await d.sandboxes.update_resources(req.pod_sandbox_id, limits_from(req.resources))
    return pb.UpdatePodSandboxResourcesResponse()
