"""The CRI log format conmon writes: ``<RFC3339Nano> <stdout|stderr> <P|F> <text>``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LogLine:
    timestamp: str
    stream: str
    partial: bool
    text: str


def parse_line(line: str) -> LogLine | None:
    """One line of a CRI log file; None if it is not in the format. Pure."""
    parts = line.rstrip("\n").split(" ", 3)
    if len(parts) < 3 or parts[1] not in ("stdout", "stderr") or parts[2] not in ("P", "F"):
        return None
    return LogLine(parts[0], parts[1], parts[2] == "P", parts[3] if len(parts) > 3 else "")
