"""shim/interceptor.py: the bookkeeping around every handler (a log line, the outcome as a
gRPC status), kept cheap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import structlog

from shim import interceptor, log
from shim.cri import api_pb2 as pb

PATH = "/runtime.v1.RuntimeService/Version"


async def version(request: Any) -> pb.VersionResponse:
    return pb.VersionResponse(runtime_name="tether")


def test_a_handler_answers_and_a_body_that_does_not_decode_is_invalid_argument() -> None:
    decode = interceptor.safe(pb.VersionRequest.FromString)
    req = decode(pb.VersionRequest(version="v1").SerializeToString())
    resp = asyncio.run(interceptor.run_unary(PATH, version, req, (("x-request-id", "r1"),)))
    assert resp.runtime_name == "tether"
    bad = decode(b"\xff\xff\xff")
    with pytest.raises(interceptor.Refused) as info:
        asyncio.run(interceptor.run_unary(PATH, version, bad, ()))
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid protobuf message" in info.value.message


def test_a_bug_is_internal_naming_the_method() -> None:
    async def broken(request: Any) -> Any:
        raise KeyError("x")

    with pytest.raises(interceptor.Refused) as info:
        asyncio.run(interceptor.run_unary(PATH, broken, pb.VersionRequest(), ()))
    assert info.value.code == grpc.StatusCode.INTERNAL
    assert info.value.message.startswith("Version: internal error")


def test_a_stream_closed_mid_way_ends_its_bookkeeping_in_its_own_context() -> None:
    """The server closes a stream whose client left: the log context bound for it is reset
    (in the context it was bound in: no ValueError) and nothing stays bound."""

    async def items(request: Any) -> AsyncIterator[int]:
        for i in range(10):
            yield i

    async def main() -> list[int]:
        stream = interceptor.run_stream(PATH, items, pb.VersionRequest(), ())
        got = [await stream.__anext__(), await stream.__anext__()]
        await stream.aclose()
        assert "method" not in structlog.contextvars.get_contextvars()
        return got

    assert asyncio.run(main()) == [0, 1]


def test_named_loggers_are_made_once_per_configuration() -> None:
    log.configure("info", "json")
    a = log.get("rpc")
    assert log.get("rpc") is a
    log.configure("debug", "json")  # a SIGHUP: the new level reaches the next RPC's line
    assert log.get("rpc") is not a


def test_the_quiet_calls_are_read_only_cri_methods() -> None:
    """Logged at debug when they succeed: each names a method, and none changes anything."""
    methods = {m.name for s in pb.DESCRIPTOR.services_by_name.values() for m in s.methods}
    assert methods >= interceptor.QUIET
    assert all(m.startswith(("List", "Stream", "Version", "Status", "RuntimeConfig", "Image"))
               or m.endswith(("Status", "Stats")) for m in interceptor.QUIET)
