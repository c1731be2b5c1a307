"""CreateContainer: the bundle (rootfs + OCI spec) in a ready pod."""

from __future__ import annotations

import dataclasses

from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.rpc import namespace_policy
from shim.rpc.registry import rpc
from shim.rpc.services import Services


@rpc("CreateContainer")
async def create_container(
    d: Services, req: pb.CreateContainerRequest, ctx: object
) -> pb.CreateContainerResponse:
    if not req.pod_sandbox_id:
        raise InvalidArgument("pod_sandbox_id: required")
    if not req.HasField("config"):
        raise InvalidArgument("config: required")
    check_config(req.config)
    # before any side effect: a denial leaves nothing behind
    subject, granted = namespace_policy.check_container(d, req.pod_sandbox_id, req.config)
    cid = ""
    try:
        cid = await d.containers.create(req.pod_sandbox_id, req.config, req.sandbox_config)
    finally:
        if subject is not None and granted:
            d.nspolicy.record("CreateContainer",
                              dataclasses.replace(subject, container_id=cid), granted)
    return pb.CreateContainerResponse(container_id=cid)


def _short(v: str) -> str:
    return repr(v[:64] + ("..." if len(v) > 64 else ""))


def check_config(cfg: pb.ContainerConfig) -> None:
    """What the runtime would only refuse at StartContainer (as INTERNAL runtime text), or
    not at all, refused here with InvalidArgument naming the field."""
    sc = cfg.linux.security_context
    if sc.HasField("run_as_group") and not sc.HasField("run_as_user") and not sc.run_as_username:
        # as the kubelet and containerd refuse it: a group with the image's user is ambiguous
        raise InvalidArgument(
            "config.linux.security_context.run_as_group: set without run_as_user or "
            "run_as_username")
    for field, values in (("command", cfg.command), ("args", cfg.args)):
        for i, v in enumerate(values):
            if "\0" in v:
                raise InvalidArgument(f"config.{field}[{i}]: {_short(v)} contains a NUL byte")
    if cfg.command and not cfg.command[0]:
        raise InvalidArgument("config.command[0]: empty")
    for i, kv in enumerate(cfg.envs):
        if not kv.key or "=" in kv.key or "\0" in kv.key:
            raise InvalidArgument(f"config.envs[{i}].key: {_short(kv.key)} is not a variable "
                                  "name (empty, or has '=' or NUL)")
        if b"\0" in kv.value:  # bytes in the CRI
            raise InvalidArgument(f"config.envs[{i}].value: contains a NUL byte")
    if cfg.stop_signal not in pb.Signal.values():
        raise InvalidArgument(f"config.stop_signal: unknown value {cfg.stop_signal}")
    for i, m in enumerate(cfg.mounts):
        for name in ("container_path", "host_path"):
            path = getattr(m, name)
            if "\0" in path:
                raise InvalidArgument(f"config.mounts[{i}].{name}: contains a NUL byte")
        if m.host_path and not m.host_path.startswith("/"):
            raise InvalidArgument(f"config.mounts[{i}].host_path: {_short(m.host_path)} must "
                                  "be an absolute path")
    if cfg.log_path and (cfg.log_path.startswith("/") or ".." in cfg.log_path.split("/")
                         or "\0" in cfg.log_path):
        raise InvalidArgument(f"config.log_path: {_short(cfg.log_path)} must be a path "
                              "relative to the pod's log_directory, without '..'")
