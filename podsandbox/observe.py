"""How the sandbox manager logs and traces without importing ``shim``: the daemon hands in a
structlog-style logger and its span factory (``shim.tracing.span``); both default to
nothing, so ``podsandbox/`` also runs on its own (tools, tests)."""

from __future__ import annotations

from typing import Any, Protocol

# An attribute value as OpenTelemetry takes it.
Attr = str | bool | int | float | None


class Logger(Protocol):
    def info(self, event: str, /, **kw: Any) -> Any: ...

    def warning(self, event: str, /, **kw: Any) -> Any: ...

    def error(self, event: str, /, **kw: Any) -> Any: ...


class Span(Protocol):
    """A step's span: ``set`` adds attributes learnt on the way."""

    @property
    def recording(self) -> bool: ...  # False when off or not sampled: skip costly attributes

    def set(self, **attrs: Attr) -> None: ...

    def __enter__(self) -> Span: ...

    def __exit__(self, *exc: object) -> None: ...


class SpanFactory(Protocol):
    """A child span of the current one (the RPC's) for one step, named ``name``."""

    def __call__(self, name: str, **attrs: Attr) -> Span: ...


class _Quiet:
    """No logging and no tracing: one shared object."""

    __slots__ = ()
    recording = False

    def info(self, event: str, /, **kw: Any) -> None:
        pass

    warning = error = info

    def set(self, **attrs: Attr) -> None:
        pass

    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


QUIET = _Quiet()


def no_span(name: str, **attrs: Attr) -> Span:
    return QUIET
