"""Attach: a URL on the streaming server for the container's own stdio (conmon's attach
socket; shim.streaming)."""

from __future__ import annotations

import os

from shim.cri import api_pb2 as pb
from shim.errors import FailedPrecondition, InvalidArgument
from shim.rpc.registry import rpc
from shim.rpc.services import Services
from shim.streaming.server import AttachTarget


@rpc("Attach")
async def attach(d: Services, req: pb.AttachRequest) -> pb.AttachResponse:
    if not req.container_id:
        raise InvalidArgument("container_id: required")
    if not (req.stdin or req.stdout or req.stderr):
        raise InvalidArgument("one of stdin, stdout and stderr must be set")
    cid, details = d.containers.attach_target(req.container_id)
    if req.stdin and not details.stdin:
        raise FailedPrecondition(
            f"container {cid} was not created with stdin: there is nothing to attach it to")
    # the streams are the client's choice (req.tty); a tty container's output is all stdout
    target = AttachTarget(
        cid, os.path.join(details.bundle, "attach"), os.path.join(details.bundle, "ctl"),
        req.stdin, req.stdout, req.stderr, req.tty, details.stdin_once)
    return pb.AttachResponse(url=d.streaming.url("attach", target))
