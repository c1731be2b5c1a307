"""Tracing: OpenTelemetry spans when ``[tracing] enabled = true``, nothing at all otherwise.

Call sites stay one line whatever the config: ``with tracing.span("cni.add", pod_sandbox_id=sid):``.
Keyword attributes become ``tether.<name>`` span attributes (None values are dropped). Until
``configure`` turns tracing on, ``span`` hands back one shared no-op object, and the
opentelemetry packages are never imported: an idle daemon's memory is a headline number, and
the SDK with its OTLP exporter costs about 2 MiB of it (docs/tracing.md). The SDK side lives in
``shim.otel``, imported only by ``configure``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

# The attribute type and a step's span are podsandbox's (the lower layer: it may not import
# shim/, which hands it ``span``); re-exported for the rest of shim/.
from podsandbox.observe import Attr, Span

if TYPE_CHECKING:
    import grpc

    from shim.config import TracingConfig


# What the SDK side needs; checked at config load when tracing is on.
REQUIRED_MODULES = (
    "opentelemetry.sdk.trace",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
)
EXTRA_HINT = "pip install 'tether[tracing]'"


class RPCSpan(Protocol):
    """The span of one RPC, begun and ended by the interceptor (current in between)."""

    @property
    def recording(self) -> bool: ...

    @property
    def trace_id(self) -> str: ...

    def set(self, **attrs: Attr) -> None: ...

    def end(self, code: grpc.StatusCode, message: str) -> None: ...


class _Noop:
    """Tracing off: one shared object, no allocation per call."""

    __slots__ = ()
    recording = False
    trace_id = ""

    def set(self, **attrs: Attr) -> None:
        pass

    def end(self, code: grpc.StatusCode, message: str) -> None:
        pass

    def __enter__(self) -> _Noop:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


NOOP = _Noop()


class Backend(Protocol):
    def span(self, name: str, attrs: dict[str, Attr]) -> Span: ...

    def annotate(self, attrs: dict[str, Attr]) -> None: ...

    def rpc_span(self, service: str, method: str, metadata: Iterable[tuple[str, Any]],
                 attrs: dict[str, Attr]) -> RPCSpan: ...

    def shutdown(self) -> None: ...


_backend: Backend | None = None


def enabled() -> bool:
    return _backend is not None


def span(name: str, **attrs: Attr) -> Span:
    """A child span of whatever span is current (the RPC's), for one step."""
    if _backend is None:
        return NOOP
    return _backend.span(name, attrs)


def annotate(**attrs: Attr) -> None:
    """Attributes on the current span (the RPC's, outside any step): what a manager learns
    that the request did not say, such as the handler a pod got by default."""
    if _backend is not None:
        _backend.annotate(attrs)


def rpc_span(full_method: str, metadata: Iterable[tuple[str, Any]] | None,
             attrs: dict[str, Attr]) -> RPCSpan:
    """Begin the server span of an RPC (``/runtime.v1.RuntimeService/RunPodSandbox``); a
    W3C ``traceparent`` in the metadata (the kubelet's, when its tracing is on) is its parent."""
    if _backend is None:
        return NOOP
    service, _, method = full_method.lstrip("/").rpartition("/")
    return _backend.rpc_span(service, method, metadata or (), attrs)


# --- config ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    target: str  # host:port, as grpc dials it
    insecure: bool  # plaintext (no TLS)


def parse_endpoint(endpoint: str) -> Endpoint:
    """``host:port`` (plaintext, as a node-local collector is reached), ``http://host:port``
    (plaintext) or ``https://host:port`` (TLS, the system's CAs). ValueError says why not."""
    if "://" in endpoint:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"scheme {parts.scheme!r}: must be http or https")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("an OTLP/gRPC endpoint has no path")
        insecure = parts.scheme == "http"
        rest = parts.netloc
    else:
        insecure, rest = True, endpoint
    host, sep, port = rest.rpartition(":")
    if not sep or not host or host in ("[]",):
        raise ValueError("must be host:port or an http(s):// URL with a port")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"port {port!r}: must be 1..65535")
    if any(c.isspace() for c in host) or "/" in host or "@" in host:
        raise ValueError(f"host {host!r}: not a host name or address")
    return Endpoint(f"{host}:{port}", insecure)


def missing_packages() -> str | None:
    """None when the SDK and the OTLP exporter can be imported; else what is missing."""
    for name in REQUIRED_MODULES:
        try:
            found = importlib.util.find_spec(name)
        except ImportError as e:  # a parent package is missing
            return f"{name} ({e})"
        if found is None:
            return name
    return None


def configure(cfg: TracingConfig) -> None:
    """Turn tracing on as configured (a no-op when it is off): the only import of the SDK."""
    global _backend
    if not cfg.enabled or _backend is not None:
        return
    from shim import otel  # here only: the SDK's import costs memory (module docstring)

    _backend = otel.Backend(cfg.service_name, parse_endpoint(cfg.endpoint), cfg.sampling_ratio)


def shutdown() -> None:
    """Export what is buffered and stop (at daemon stop)."""
    global _backend
    if _backend is not None:
        backend, _backend = _backend, None
        backend.shutdown()
