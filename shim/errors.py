"""The one exception hierarchy of Tether.

Every layer raises these; a single gRPC interceptor (``shim.server.interceptors``) maps them to
status codes. Messages name the object and, for bad input, the request field at fault.
"""

from __future__ import annotations

import grpc


class TetherError(Exception):
    """Base class: an error the kubelet should see with a precise gRPC code."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        # Full text for the log (e.g. a tool's whole stderr); the message carries a trimmed form.
        self.detail = detail


class NotFound(TetherError):
    code = grpc.StatusCode.NOT_FOUND


class InvalidArgument(TetherError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class FailedPrecondition(TetherError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class AlreadyExists(TetherError):
    code = grpc.StatusCode.ALREADY_EXISTS


class Unavailable(TetherError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(TetherError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unauthenticated(TetherError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(TetherError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(TetherError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unimplemented(TetherError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(TetherError):
    code = grpc.StatusCode.INTERNAL


def trim(text: str, limit: int = 512) -> str:
    """Shorten a tool's output for an error message; keep the end, where tools put the cause."""
    text = text.strip()
    if len(text) <= limit:
        return text
    return "…" + text[-limit:]
