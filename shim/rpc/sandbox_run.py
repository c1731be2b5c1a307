"""RunPodSandbox: validate, consult the namespace policy, then the sandbox manager makes the
pod (pause-holder, CNI)."""

from __future__ import annotations

import dataclasses

from shim import tracing
from shim.cri import api_pb2 as pb
from shim.rpc import namespace_policy
from shim.rpc.registry import rpc
from shim.rpc.sandbox_convert import spec_from_request
from shim.rpc.services import Services


@rpc("RunPodSandbox")
async def run_pod_sandbox(
    d: Services, req: pb.RunPodSandboxRequest
) -> pb.RunPodSandboxResponse:
    spec = spec_from_request(req, d.config.runtime.default_handler)
    tracing.annotate(runtime_handler=spec.runtime_handler)  # the default one, when unnamed
    # before any side effect: a denial leaves nothing behind
    subject, granted = namespace_policy.check_pod(d, spec)
    sandbox_id = ""
    try:
        sandbox_id = await d.sandboxes.run(spec)
    finally:
        if granted:  # recorded whether or not the pod came up: the grant was made
            d.nspolicy.record("RunPodSandbox", dataclasses.replace(subject, pod_id=sandbox_id),
                              granted)
    return pb.RunPodSandboxResponse(pod_sandbox_id=sandbox_id)
