"""structlog setup: JSON lines for machines, console output for people, one level switch.

A request id is bound per RPC with contextvars (``structlog.contextvars``), so every line
logged while serving one request carries it.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


def _renderer(fmt: str) -> Any:
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    if fmt == "console":
        return structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    return structlog.processors.JSONRenderer()


_loggers: dict[str, Any] = {}  # by name, until the next configure


def configure(level: str = "info", fmt: str = "auto") -> None:
    """(Re)configure logging; safe to call again on SIGHUP."""
    _loggers.clear()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            _renderer(fmt),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get(name: str | None = None) -> Any:
    """A logger; a named one is made once per configuration (the interceptor asks for one
    per RPC, and making it costs more than the log line)."""
    if not name:
        return structlog.get_logger()
    log = _loggers.get(name)
    if log is None:
        log = _loggers[name] = structlog.get_logger().bind(logger=name)
    return log
