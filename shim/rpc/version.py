"""Version: who we are and which CRI version we speak."""

from __future__ import annotations

from shim.cri import api_pb2 as pb
from shim.rpc.registry import rpc
from shim.rpc.services import Services
from shim.version import RUNTIME_NAME, RUNTIME_VERSION

# The kubelet's runtime API version string; every CRI runtime reports 0.1.0 here.
KUBELET_API_VERSION = "0.1.0"
RUNTIME_API_VERSION = "v1"


@rpc("Version")
async def version_rpc(d: Services, req: pb.VersionRequest) -> pb.VersionResponse:
    return pb.VersionResponse(
        version=KUBELET_API_VERSION,
        runtime_name=RUNTIME_NAME,
        runtime_version=RUNTIME_VERSION,
        runtime_api_version=RUNTIME_API_VERSION,
    )
