"""The OpenTelemetry SDK side of ``shim.tracing``: imported only when tracing is on.

A private TracerProvider (nothing global: a library in the daemon cannot start exporting
behind our back), a parent-based ratio sampler, a batch processor with the OTLP/gRPC
exporter. Spans are exported from the processor's thread; a collector that is down costs
dropped spans and log lines from the exporter, never a slower RPC.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import AbstractContextManager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.status import Status, StatusCode

from shim import log
from shim.tracing import Attr, Endpoint

_PROPAGATOR = TraceContextTextMapPropagator()
_PREFIX = "tether."
_MESSAGE_LIMIT = 1024  # of an error message in a span's status


def _version() -> str:
    try:
        return version("tether")
    except PackageNotFoundError:  # a source tree that was not installed
        return "0.0.0+source"


def attributes(attrs: dict[str, Attr]) -> dict[str, str | bool | int | float]:
    return {_PREFIX + k: v for k, v in attrs.items() if v is not None}


class _ToStructlog(logging.Handler):
    """The SDK's and exporter's stdlib log records (a collector that is down) as the
    daemon's own log lines, not plain text among the JSON lines."""

    def emit(self, record: logging.LogRecord) -> None:
        logger = log.get("tracing")
        msg = record.getMessage()
        if record.levelno >= logging.ERROR:
            logger.error(msg, source=record.name)
        elif record.levelno >= logging.WARNING:
            logger.warning(msg, source=record.name)
        else:
            logger.debug(msg, source=record.name)


def _route_logs() -> None:
    root = logging.getLogger("opentelemetry")
    if not any(isinstance(h, _ToStructlog) for h in root.handlers):
        root.addHandler(_ToStructlog())
    root.setLevel(logging.INFO)
    root.propagate = False


class _Step:
    __slots__ = ("_cm", "_span")

    def __init__(self, cm: AbstractContextManager[trace.Span]) -> None:
        self._cm = cm
        self._span: trace.Span = trace.INVALID_SPAN

    def __enter__(self) -> _Step:
        self._span = self._cm.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        # the SDK records an exception and sets ERROR; the exception goes on
        self._cm.__exit__(*exc)

    @property
    def recording(self) -> bool:  # False when the trace is not sampled
        return self._span.is_recording()

    def set(self, **attrs: Attr) -> None:
        self._span.set_attributes(attributes(attrs))


class _RPC:
    __slots__ = ("_span", "_token", "trace_id")

    def __init__(self, span: trace.Span) -> None:
        self._span = span
        self._token = otel_context.attach(trace.set_span_in_context(span))
        ctx = span.get_span_context()
        # logged with the RPC's line when sampled: the log and the trace meet
        self.trace_id = trace.format_trace_id(ctx.trace_id) if span.is_recording() else ""

    @property
    def recording(self) -> bool:
        return self._span.is_recording()

    def set(self, **attrs: Attr) -> None:
        self._span.set_attributes(attributes(attrs))

    def end(self, code: grpc.StatusCode, message: str) -> None:
        number, _ = code.value
        self._span.set_attribute("rpc.grpc.status_code", number)
        if code != grpc.StatusCode.OK:
            self._span.set_status(Status(StatusCode.ERROR, f"{code.name}: {message}"[
                :_MESSAGE_LIMIT]))
        self._span.end()
        otel_context.detach(self._token)


def _carrier(metadata: Iterable[tuple[str, Any]]) -> dict[str, str]:
    return {k: v for k, v in metadata if k in ("traceparent", "tracestate")
            and isinstance(v, str)}


class Backend:
    def __init__(self, service_name: str, endpoint: Endpoint, ratio: float,
                 exporter: SpanExporter | None = None) -> None:
        _route_logs()
        ver = _version()
        resource = Resource.create({"service.name": service_name,
                                    "service.version": ver})
        self.provider = TracerProvider(resource=resource,
                                       sampler=ParentBased(TraceIdRatioBased(ratio)),
                                       shutdown_on_exit=False)
        if exporter is None:  # the unit tests hand in an in-memory one
            exporter = OTLPSpanExporter(endpoint=endpoint.target, insecure=endpoint.insecure,
                                        timeout=5)
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("tether", ver)

    def span(self, name: str, attrs: dict[str, Attr]) -> _Step:
        return _Step(self.tracer.start_as_current_span(name, attributes=attributes(attrs)))

    def annotate(self, attrs: dict[str, Attr]) -> None:
        trace.get_current_span().set_attributes(attributes(attrs))

    def rpc_span(self, service: str, method: str, metadata: Iterable[tuple[str, Any]],
                 attrs: dict[str, Attr]) -> _RPC:
        carrier = _carrier(metadata)
        parent = _PROPAGATOR.extract(carrier) if carrier else None
        span = self.tracer.start_span(
            f"{service}/{method}", context=parent, kind=trace.SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": method,
                        **attributes(attrs)})
        return _RPC(span)

    def shutdown(self) -> None:
        self.provider.force_flush(timeout_millis=3000)
        self.provider.shutdown()
