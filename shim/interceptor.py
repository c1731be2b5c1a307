"""The one gRPC interceptor: request id, one log line per RPC (at debug for the polled
read-only calls, ``QUIET``), metrics, the RPC's span, errors to codes. Not a grpc
ServerInterceptor: the server (``shim.server``) runs every handler through ``run_unary`` /
``run_stream`` on the event loop, and a call answered by one of its threads from a prepared
response through ``answered_here``.

Handlers raise ``shim.errors.TetherError`` subclasses (defined in ``cni/errdefs.py``) carrying
a neutral ``Code``; this is the only place that turns them into gRPC status codes
(``GRPC_CODES``). Anything else is a bug: logged with its traceback, INTERNAL.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

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

# The read-only calls the kubelet polls every second or so: logged at debug when they succeed
# (as CRI-O and containerd do), so that an info log shows what changed and what failed.
QUIET = frozenset({
    "Version", "Status", "RuntimeConfig", "ListPodSandbox", "StreamPodSandboxes",
    "PodSandboxStatus", "ListContainers", "StreamContainers", "ContainerStatus",
    "ContainerStats", "ListContainerStats", "StreamContainerStats", "PodSandboxStats",
    "ListPodSandboxStats", "StreamPodSandboxStats", "ListMetricDescriptors",
    "ListPodSandboxMetrics", "StreamPodSandboxMetrics",
    "ListImages", "StreamImages", "ImageStatus", "ImageFsInfo",
})

# Request fields worth a place in the log line, when the message has them.
_ID_FIELDS = ("pod_sandbox_id", "container_id")
# Response fields that name what the RPC made or resolved: span attributes.
_RESPONSE_FIELDS = ("pod_sandbox_id", "container_id", "image_ref")


class Undecodable:
    """A request body that did not decode (bad UTF-8 in a string field, truncated bytes):
    answered InvalidArgument by ``run_unary`` / ``run_stream`` instead of grpcio's UNKNOWN."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def safe(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """``deserialize`` that answers a body it cannot decode with an ``Undecodable``."""

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


Metadata = Sequence[tuple[str, str | bytes]]


def _request_id(metadata: Metadata) -> str:
    for key, value in metadata:
        if key == "x-request-id" and isinstance(value, str):
            return value[:64]
    # to tell log lines apart, not a secret: no syscall (uuid4 reads the kernel's random)
    return f"{random.getrandbits(64):016x}"


@functools.cache
def _per_method(method: str) -> tuple[Any, Any]:
    """The method's children of the operations counter and the latency histogram (labels()
    takes a lock and builds a key on every call)."""
    return metrics.OPERATIONS.labels(method), metrics.OPERATION_LATENCY.labels(method)


def _count(method: str, started: float) -> float:
    """Count a call of ``method`` and its latency; returns the seconds it took."""
    elapsed = time.monotonic() - started
    operations, latency = _per_method(method)
    operations.inc()
    latency.observe(elapsed)
    return elapsed


class Refused(Exception):
    """An RPC's failure as the gRPC status its client gets (the server aborts with it)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


class _Call:
    """Bookkeeping of one RPC: binds the log context, records the outcome once."""

    def __init__(self, path: str, request: Any, metadata: Metadata) -> None:
        self.method = path.rsplit("/", 1)[-1]
        self.start = time.monotonic()
        self.code = grpc.StatusCode.OK
        self.message = ""
        self.ids = _ids(request)
        self.span: tracing.RPCSpan = tracing.NOOP
        if tracing.enabled():
            self.span = tracing.rpc_span(path, metadata, span_attributes(request, self.ids))
        extra = {"trace_id": self.span.trace_id} if self.span.trace_id else {}
        self.tokens = structlog.contextvars.bind_contextvars(
            request_id=_request_id(metadata), method=self.method, **extra
        )

    def answered(self, response: Any) -> None:
        if self.span.recording:
            self.span.set(**response_attributes(response))

    def refuse(self, exc: BaseException) -> Refused:
        """The status ``exc`` is answered with, logged (with its traceback if a bug)."""
        logger = log.get("rpc")
        if isinstance(exc, TetherError):
            self.code = GRPC_CODES[exc.code]
            self.message = exc.message
            if exc.detail:
                logger.debug("error detail", detail=exc.detail, **self.ids)
            return Refused(self.code, exc.message)
        logger.exception("unexpected error", **self.ids)
        self.code = grpc.StatusCode.INTERNAL
        self.message = f"internal error: {exc}"
        return Refused(self.code, f"{self.method}: internal error: {exc}")

    def finish(self) -> None:
        elapsed = _count(self.method, self.start)
        logger = log.get("rpc")
        fields = dict(self.ids, code=self.code.name, duration_ms=round(elapsed * 1000, 3))
        if self.code != grpc.StatusCode.OK:
            metrics.OPERATION_ERRORS.labels(self.method, self.code.name).inc()
            logger.info("rpc failed", **fields)
        elif self.method in QUIET:
            logger.debug("rpc", **fields)
        else:
            logger.info("rpc", **fields)
        self.span.end(self.code, self.message)
        structlog.contextvars.reset_contextvars(**self.tokens)


async def run_unary(path: str, behavior: Callable[[Any], Awaitable[Any]], request: Any,
                    metadata: Metadata) -> Any:
    """``behavior(request)`` with the bookkeeping around it; a failure raises ``Refused``."""
    call = _Call(path, request, metadata)
    try:
        if (bad := _undecodable(request)) is not None:
            raise bad
        response = await behavior(request)
        call.answered(response)
        return response
    except asyncio.CancelledError:  # the client went away or its deadline passed
        call.code = grpc.StatusCode.CANCELLED
        raise
    except Exception as exc:
        raise call.refuse(exc) from None
    finally:
        call.finish()


async def run_stream(path: str, behavior: Callable[[Any], AsyncIterator[Any]], request: Any,
                     metadata: Metadata) -> AsyncGenerator[Any, None]:
    """The server-streaming twin of ``run_unary``."""
    call = _Call(path, request, metadata)
    try:
        if (bad := _undecodable(request)) is not None:
            raise bad
        async for item in behavior(request):
            yield item
    except (asyncio.CancelledError, GeneratorExit):  # the client left mid-stream
        call.code = grpc.StatusCode.CANCELLED
        raise
    except Exception as exc:
        raise call.refuse(exc) from None
    finally:
        call.finish()


def answered_here(path: str, metadata: Metadata, started: float) -> None:
    """The bookkeeping of a call answered by a server thread from a prepared response (a
    polled call without ids: no span, the server takes that path only with tracing off; no
    log context to bind for a line logged at debug, if at all)."""
    method = path.rsplit("/", 1)[-1]
    elapsed = _count(method, started)
    log.get("rpc").debug("rpc", method=method, request_id=_request_id(metadata), code="OK",
                         duration_ms=round(elapsed * 1000, 3))
