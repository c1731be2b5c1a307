"""RuntimeConfig and UpdateRuntimeConfig: the cgroup driver out, the pod CIDR in."""

from __future__ import annotations

from shim import log
from shim.cri import api_pb2 as pb
from shim.rpc.registry import rpc
from shim.rpc.services import Services

_DRIVERS = {"cgroupfs": pb.CgroupDriver.CGROUPFS, "systemd": pb.CgroupDriver.SYSTEMD}


@rpc("RuntimeConfig")
async def runtime_config(
    d: Services, req: pb.RuntimeConfigRequest
) -> pb.RuntimeConfigResponse:
    driver = _DRIVERS[d.config.runtime.cgroup_driver]
    return pb.RuntimeConfigResponse(linux=pb.LinuxRuntimeConfiguration(cgroup_driver=driver))


@rpc("UpdateRuntimeConfig")
async def update_runtime_config(
    d: Services, req: pb.UpdateRuntimeConfigRequest
) -> pb.UpdateRuntimeConfigResponse:
    # The pod CIDR lives in the CNI config (host-local ranges); like CRI-O, only note it.
    cidr = req.runtime_config.network_config.pod_cidr
    if cidr:
        log.get("runtime").info("pod CIDR from the kubelet", pod_cidr=cidr)
    return pb.UpdateRuntimeConfigResponse()
