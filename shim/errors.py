"""The one exception hierarchy of Tether, as the code in ``shim/`` imports it.

The classes and their neutral :class:`Code` are defined in ``cni/errdefs.py``, the lowest
layer, so ``cni/`` and ``podsandbox/`` raise the very same classes without importing ``shim``;
this module re-exports them. The gRPC interceptor (``shim/interceptor.py``) alone maps a
``Code`` to a gRPC status code.
"""

from __future__ import annotations

from cni.errdefs import (
    AlreadyExists,
    Code,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    TetherError,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    trim,
)

__all__ = [
    "AlreadyExists",
    "Code",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "TetherError",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "trim",
]
