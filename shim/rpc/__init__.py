"""CRI handlers, one module per call (or per small group of calls), registered by name."""

from shim.rpc import runtime_config, status, version  # noqa: F401  (registration)
from shim.rpc.registry import HANDLERS

__all__ = ["HANDLERS"]
