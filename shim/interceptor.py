"""The one gRPC interceptor: request id, one log line per RPC, metrics, the RPC's span,
errors to codes. Not a grpc ServerInterceptor: ``add_service`` wraps each method's handler once,
at registration.

Handlers raise ``shim.errors.TetherError`` subclasses (defined in ``cni/errdefs.py``) carrying
a neutral ``Code``; this is the only place that turns them into gRPC status codes
(``GRPC_CODES``). Anything else is a bug: logged with its traceback, INTERNAL.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

import grpc
import structlog

from shim import log, metrics, tracing
from shim.errors import Code, InvalidArgument, TetherError

# The neutral error codes as gRPC status codes: the one place this mapping is made.
GRPC_CODES: dict[Code, grpc.StatusCode] = {
    Code.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Code.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    Code.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    Code.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    Code.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Code.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    Code.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Code.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    Code.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Code.UNIMPLEMENTED: grpc.StatusCode.UNIMPLEMENTED,
    Code.INTERNAL: grpc.StatusCode.INTERNAL,
}

# Request fields worth a place in the log line, when the message has them.
_ID_FIELDS = ("pod_sandbox_id", "container_id")
# Response fields that name what the RPC made or resolved: span attributes.
_RESPONSE_FIELDS = ("pod_sandbox_id", "container_id", "image_ref")


class Undecodable:
    """A request body that did not decode (bad UTF-8 in a string field, truncated bytes):
    answered InvalidArgument by the handler wrapper instead of grpcio's own UNKNOWN."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _safe(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as e:  # DecodeError and kin: whatever the parser raises
            return Undecodable(e)

    return decode


def _undecodable(request: Any) -> InvalidArgument | None:
    if isinstance(request, Undecodable):
        return InvalidArgument(f"request: not a valid protobuf message ({request.error})")
    return None


_Plan = tuple[tuple[str, ...], bool, bool]
_PLANS: dict[type, _Plan] = {}


def _id_plan(request: Any) -> _Plan:
    """Of a request's type: its id fields, whether it has a config, whether an image. Once
    per type: the descriptor's lookups cost more than the polled calls' own work."""
    plan = _PLANS.get(type(request))
    if plan is None:
        fields = request.DESCRIPTOR.fields_by_name
        plan = _PLANS[type(request)] = (tuple(n for n in _ID_FIELDS if n in fields),
                                        "config" in fields, "image" in fields)
    return plan


def _ids(request: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(request, Undecodable):
        return out
    id_fields, has_config, has_image = _id_plan(request)
    for name in id_fields:
        value = getattr(request, name)
        if value:
            out[name] = value
    if has_config and request.HasField("config"):
        md = getattr(request.config, "metadata", None)
        pod_name = getattr(md, "name", None)
        if isinstance(pod_name, str) and pod_name:
            out["name"] = pod_name
    if has_image and request.HasField("image"):
        out["image"] = request.image.image
    return out


def span_attributes(request: Any, ids: dict[str, str]) -> dict[str, tracing.Attr]:
    """The RPC span's attributes: the logged ids, a container's image, the handler a pod
    asks for."""
    out: dict[str, tracing.Attr] = {k: v for k, v in ids.items() if k != "name"}
    if isinstance(request, Undecodable):
        return out
    fields = request.DESCRIPTOR.fields_by_name
    if "config" in fields and request.HasField("config"):
        config = request.config
        container = config.DESCRIPTOR.name == "ContainerConfig"
        if "name" in ids:
            out["container_name" if container else "pod_name"] = ids["name"]
        if container and config.image.image:
            out["image"] = config.image.image
    if "runtime_handler" in fields and request.runtime_handler:
        out["runtime_handler"] = request.runtime_handler
    return out


def response_attributes(response: Any) -> dict[str, tracing.Attr]:
    out: dict[str, tracing.Attr] = {}
    fields = getattr(getattr(response, "DESCRIPTOR", None), "fields_by_name", {})
    for name in _RESPONSE_FIELDS:
        if name in fields and (value := getattr(response, name)):
            out[name] = value
    return out


def _request_id(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "x-request-id" and isinstance(value, str):
            return value[:64]
    # to tell log lines apart, not a secret: no syscall (uuid4 reads the kernel's random)
    return f"{random.getrandbits(64):016x}"


@functools.cache
def _per_method(method: str) -> tuple[Any, Any]:
    """The method's children of the operations counter and the latency histogram (labels()
    takes a lock and builds a key on every call)."""
    return metrics.OPERATIONS.labels(method), metrics.OPERATION_LATENCY.labels(method)


class _Call:
    """Bookkeeping of one RPC: binds the log context, records the outcome once."""

    def __init__(self, path: str, request: Any, context: grpc.aio.ServicerContext) -> None:
        self.method = path.rsplit("/", 1)[-1]
        self.context = context
        self.start = time.monotonic()
        self.code = grpc.StatusCode.OK
        self.message = ""
        self.ids = _ids(request)
        self.span: tracing.RPCSpan = tracing.NOOP
        if tracing.enabled():
            self.span = tracing.rpc_span(path, context.invocation_metadata(),
                                         span_attributes(request, self.ids))
        extra = {"trace_id": self.span.trace_id} if self.span.trace_id else {}
        self.tokens = structlog.contextvars.bind_contextvars(
            request_id=_request_id(context), method=self.method, **extra
        )

    def answered(self, response: Any) -> None:
        if self.span.recording:
            self.span.set(**response_attributes(response))

    async def fail(self, exc: BaseException) -> NoReturn:
        logger = log.get("rpc")
        if isinstance(exc, TetherError):
            self.code = GRPC_CODES[exc.code]
            self.message = exc.message
            if exc.detail:
                logger.debug("error detail", detail=exc.detail, **self.ids)
            await self.context.abort(self.code, exc.message)
        logger.exception("unexpected error", **self.ids)
        self.code = grpc.StatusCode.INTERNAL
        self.message = f"internal error: {exc}"
        await self.context.abort(grpc.StatusCode.INTERNAL, f"{self.method}: internal error: {exc}")
        raise AssertionError("unreachable: abort raises")

    def finish(self) -> None:
        elapsed = time.monotonic() - self.start
        if self.code == grpc.StatusCode.OK:
            # An abort from the handler itself (context.abort) sets the context's code.
            code = self.context.code()
            if isinstance(code, grpc.StatusCode):
                self.code = code
                self.message = self.context.details() or ""
        operations, latency = _per_method(self.method)
        operations.inc()
        latency.observe(elapsed)
        logger = log.get("rpc")
        fields = dict(self.ids, code=self.code.name, duration_ms=round(elapsed * 1000, 3))
        if self.code != grpc.StatusCode.OK:
            metrics.OPERATION_ERRORS.labels(self.method, self.code.name).inc()
            logger.info("rpc failed", **fields)
        else:
            logger.info("rpc", **fields)
        self.span.end(self.code, self.message)
        structlog.contextvars.reset_contextvars(**self.tokens)


def _wrap_unary(path: str, behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        call = _Call(path, request, context)
        try:
            if (bad := _undecodable(request)) is not None:
                raise bad
            response = await behavior(request, context)
            call.answered(response)
            return response
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await call.fail(exc)
        finally:
            call.finish()

    return handler


def _wrap_stream(path: str, behavior: Callable[..., AsyncIterator[Any]]) -> Callable[..., Any]:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        call = _Call(path, request, context)
        try:
            if (bad := _undecodable(request)) is not None:
                raise bad
            async for item in behavior(request, context):
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await call.fail(exc)
        finally:
            call.finish()

    return handler


def wrap(path: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """``handler`` of the method at ``path`` with this module's bookkeeping around it and an
    undecodable request turned into InvalidArgument."""
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _wrap_unary(path, handler.unary_unary),
            request_deserializer=_safe(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _wrap_stream(path, handler.unary_stream),
            request_deserializer=_safe(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
    return handler


class _Capture:
    """Stands in for the server while a generated ``add_<Service>Servicer_to_server`` hands
    it the service's method handlers."""

    def __init__(self) -> None:
        self.services: list[tuple[str, dict[str, grpc.RpcMethodHandler]]] = []

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        pass  # the same handlers come to add_registered_method_handlers

    def add_registered_method_handlers(self, service: str,
                                       handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self.services.append((service, handlers))


def add_service(server: grpc.aio.Server, add_to_server: Callable[[Any, Any], None],
                servicer: object) -> None:
    """Register a service (``add_to_server``: the generated ``add_<Service>Servicer_to_server``)
    with every method wrapped once, here, rather than by a grpc ServerInterceptor: grpc.aio
    awaits an interceptor on every call, which cost the polled List calls more than their
    own work."""
    capture = _Capture()
    add_to_server(servicer, capture)
    if not capture.services:
        raise RuntimeError(f"{add_to_server.__name__} registered no method handlers")
    for service, handlers in capture.services:
        wrapped = {name: wrap(f"/{service}/{name}", h) for name, h in handlers.items()}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, wrapped),))
        server.add_registered_method_handlers(service, wrapped)
