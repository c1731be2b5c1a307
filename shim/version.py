"""Who we are: the name and version the CRI Version RPC and ``tether --version`` report."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

RUNTIME_NAME = "tether"


def _runtime_version() -> str:
    try:
        return version("tether")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "0.0.0+source"


# Read once: the package metadata lookup costs more than the Version RPC itself.
RUNTIME_VERSION = _runtime_version()
