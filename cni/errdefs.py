"""The one exception hierarchy of Tether, with neutral codes.

Every layer raises these (``shim.errors`` re-exports them for the code above ``cni/`` and
``podsandbox/``); the gRPC interceptor (``shim/interceptor.py``) is the only place that maps a
:class:`Code` to a gRPC status code. Messages name the object and, for bad input, the request
field at fault.

This module lives in ``cni/``, the lowest package of the import table (``cni`` imports only
itself, ``podsandbox`` itself and ``cni``, ``shim`` anything), so all three may raise the same
classes; it imports nothing, grpc least of all.
"""

from __future__ import annotations

import enum


class Code(enum.Enum):
    """What kind of failure, as the caller should see it. Members are named like the gRPC
    status codes they become, but the value is what this module knows: a word."""

    NOT_FOUND = "not found"
    INVALID_ARGUMENT = "invalid argument"
    FAILED_PRECONDITION = "failed precondition"
    ALREADY_EXISTS = "already exists"
    UNAVAILABLE = "unavailable"
    DEADLINE_EXCEEDED = "deadline exceeded"
    UNAUTHENTICATED = "unauthenticated"
    PERMISSION_DENIED = "permission denied"
    RESOURCE_EXHAUSTED = "resource exhausted"
    UNIMPLEMENTED = "unimplemented"
    INTERNAL = "internal"


class TetherError(Exception):
    """Base class: an error the caller should see with a precise code."""

    code: Code = Code.INTERNAL

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        # Full text for the log (e.g. a tool's whole stderr); the message carries a trimmed form.
        self.detail = detail


class NotFound(TetherError):
    code = Code.NOT_FOUND


class InvalidArgument(TetherError):
    code = Code.INVALID_ARGUMENT


class FailedPrecondition(TetherError):
    code = Code.FAILED_PRECONDITION


class AlreadyExists(TetherError):
    code = Code.ALREADY_EXISTS


class Unavailable(TetherError):
    code = Code.UNAVAILABLE


class DeadlineExceeded(TetherError):
    code = Code.DEADLINE_EXCEEDED


class Unauthenticated(TetherError):
    code = Code.UNAUTHENTICATED


class PermissionDenied(TetherError):
    code = Code.PERMISSION_DENIED


class ResourceExhausted(TetherError):
    code = Code.RESOURCE_EXHAUSTED


class Unimplemented(TetherError):
    code = Code.UNIMPLEMENTED


class Internal(TetherError):
    code = Code.INTERNAL


def trim(text: str, limit: int = 512) -> str:
    """Shorten a tool's output for an error message; keep the end, where tools put the cause."""
    text = text.strip()
    if len(text) <= limit:
        return text
    return "…" + text[-limit:]
