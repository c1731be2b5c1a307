"""shim/interceptor.py registers every method of a service wrapped once (no grpc
ServerInterceptor on the call path), and the per-call bookkeeping it keeps cheap."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from shim import interceptor, log
from shim.cri import api_pb2 as pb
from shim.cri import api_pb2_grpc


class Server:
    def __init__(self) -> None:
        self.generic: list[Any] = []
        self.registered: dict[str, dict[str, grpc.RpcMethodHandler]] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self.generic.extend(handlers)

    def add_registered_method_handlers(self, service: str,
                                       handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self.registered[service] = handlers


class Context:
    def __init__(self) -> None:
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-request-id", "req-1"),)

    async def abort(self, code: grpc.StatusCode, details: str) -> Any:
        self.aborted = (code, details)
        raise grpc.aio.AbortError()

    def code(self) -> None:
        return None

    def details(self) -> str:
        return ""


class Servicer(api_pb2_grpc.RuntimeServiceServicer):
    async def Version(self, request: Any, context: Any) -> pb.VersionResponse:
        return pb.VersionResponse(runtime_name="tether")


def test_every_method_is_registered_wrapped() -> None:
    server = Server()
    interceptor.add_service(server, api_pb2_grpc.add_RuntimeServiceServicer_to_server,
                            Servicer())
    methods = pb.DESCRIPTOR.services_by_name["RuntimeService"].methods
    handlers = server.registered["runtime.v1.RuntimeService"]
    assert set(handlers) == {m.name for m in methods}
    call = type("Details", (), {"method": "/runtime.v1.RuntimeService/Version"})()
    assert server.generic[0].service(call) is handlers["Version"]
    version = handlers["Version"]
    # the wrapped handler answers; a body that does not decode is InvalidArgument, not UNKNOWN
    req = version.request_deserializer(pb.VersionRequest(version="v1").SerializeToString())
    resp = asyncio.run(version.unary_unary(req, Context()))
    assert resp.runtime_name == "tether"
    ctx = Context()
    bad = version.request_deserializer(b"\xff\xff\xff")
    with pytest.raises(grpc.aio.AbortError):
        asyncio.run(version.unary_unary(bad, ctx))
    assert ctx.aborted is not None and ctx.aborted[0] == grpc.StatusCode.INVALID_ARGUMENT


def test_a_service_that_registers_nothing_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="no method handlers"):
        interceptor.add_service(Server(), lambda servicer, server: None, object())


def test_named_loggers_are_made_once_per_configuration() -> None:
    log.configure("info", "json")
    a = log.get("rpc")
    assert log.get("rpc") is a
    log.configure("debug", "json")  # a SIGHUP: the new level reaches the next RPC's line
    assert log.get("rpc") is not a
