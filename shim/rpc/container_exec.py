"""Exec: a URL on the streaming server for an interactive exec (shim.streaming)."""

from __future__ import annotations

from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.rpc.registry import rpc
from shim.rpc.services import Services
from shim.streaming.server import ExecTarget


@rpc("Exec")
async def exec_(d: Services, req: pb.ExecRequest) -> pb.ExecResponse:
    if not req.container_id:
        raise InvalidArgument("container_id: required")
    if not (req.stdin or req.stdout or req.stderr):
        raise InvalidArgument("one of stdin, stdout and stderr must be set")
    if req.tty and req.stderr:
        raise InvalidArgument("tty and stderr cannot both be set (a terminal has one output)")
    for i, arg in enumerate(req.cmd):
        if "\0" in arg:
            raise InvalidArgument(f"cmd[{i}]: contains a NUL byte")
    cid, runtime, bundle, process = d.containers.exec_target(req.container_id, list(req.cmd),
                                                             req.tty)
    target = ExecTarget(cid, runtime, bundle, process, req.stdin, req.stdout, req.stderr,
                        req.tty)
    return pb.ExecResponse(url=d.streaming.url("exec", target))
