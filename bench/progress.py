"""A one-line progress bar on stderr (only when stderr is a terminal)."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, *, stream: TextIO | None = None,
                 enabled: bool | None = None, width: int = 30) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.note = ""
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.width = width
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def set_note(self, note: str) -> None:
        with self._lock:
            self.note = note
            self._draw()

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.done = min(self.total, self.done + n)
            self._draw()

    def line(self) -> str:
        frac = self.done / self.total
        filled = int(frac * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = time.monotonic() - self.started
        return f"[{bar}] {frac * 100:5.1f}% {elapsed:6.1f}s  {self.note}"

    def _draw(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[2K" + self.line()[:160])
            self.stream.flush()

    def message(self, text: str) -> None:
        """Print a line above the bar."""
        with self._lock:
            if self.enabled:
                self.stream.write("\r\x1b[2K")
            self.stream.write(text + "\n")
            self._draw()

    def close(self) -> None:
        with self._lock:
            if self.enabled:
                self.stream.write("\r\x1b[2K")
                self.stream.flush()
