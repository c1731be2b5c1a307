"""The CRI log format conmon writes: ``<RFC3339Nano> <stdout|stderr> <P|F> <text>``."""

from __future__ import annotations

import os
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


def tail(path: str, limit: int, max_lines: int = 80) -> str:
    """The last lines of a container's output (joined P/F fragments), at most ``limit`` bytes,
    for the FallbackToLogsOnError termination message."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode(errors="replace")
    except OSError:
        return ""
    out: list[str] = []
    current = ""
    for raw in data.splitlines():
        parsed = parse_line(raw)
        if parsed is None:
            continue
        current += parsed.text
        if not parsed.partial:
            out.append(current)
            current = ""
    text = "\n".join(out[-max_lines:])
    encoded = text.encode()
    return encoded[-limit:].decode(errors="ignore") if len(encoded) > limit else text
