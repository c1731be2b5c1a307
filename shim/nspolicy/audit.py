"""The audit log: one JSON object per line in a file of its own, rotated by size.

RPCs only put records on a bounded queue; a writer thread of its own does the file I/O, so
a slow or full disk never holds up the kubelet. A record that finds the queue full is
dropped and counted (``tether_namespace_audit_dropped_total``), never waited for.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
from typing import Any

from shim import log
from shim.nspolicy import metrics

QUEUE_SIZE = 10000
_STOP = object()


def rotate(path: str, keep: int) -> None:
    """path -> path.1 -> ... -> path.<keep>; the oldest goes. keep=0: path is just removed."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(f"{path}.{keep}" if keep else path)
    for i in range(keep - 1, 0, -1):
        with contextlib.suppress(FileNotFoundError):
            os.rename(f"{path}.{i}", f"{path}.{i + 1}")
    if keep:
        with contextlib.suppress(FileNotFoundError):
            os.rename(path, f"{path}.1")


def encode(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode()


class AuditLog:
    def __init__(self, path: str, max_bytes: int, keep: int) -> None:
        self._settings = (path, max_bytes, keep)
        self._queue: queue.Queue[Any] = queue.Queue(QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.logger = log.get("audit")

    def configure(self, path: str, max_bytes: int, keep: int) -> None:
        """New settings (SIGHUP): for the records written from now on."""
        self._settings = (path, max_bytes, keep)

    def write(self, record: dict[str, Any]) -> None:
        self._start()
        try:
            # the settings travel with the record: a reload never redirects queued lines
            self._queue.put_nowait((record, self._settings))
        except queue.Full:
            metrics.AUDIT_DROPPED.inc()

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the writer (at shutdown)."""
        thread = self._thread
        if thread is None:
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=timeout)
        thread.join(timeout)
        self._thread = None

    def _start(self) -> None:
        # Started by the first record: with the policy off there is no thread and no file.
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tether-audit",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        f = None
        opened = ""
        while True:
            item = self._queue.get()
            batch = [item]
            while item is not _STOP:  # drain what is there: one flush per burst
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                batch.append(item)
            path = opened
            try:
                for item in batch:
                    if item is _STOP:
                        continue
                    record, (path, max_bytes, keep) = item
                    line = encode(record)
                    if f is not None and opened != path:
                        f.close()
                        f = None
                    if f is None:
                        f, opened = _open(path), path
                    if f.tell() and f.tell() + len(line) > max_bytes:
                        f.close()
                        rotate(path, keep)
                        f = _open(path)
                    f.write(line)
                if f is not None:
                    f.flush()
            except OSError as e:
                metrics.AUDIT_DROPPED.inc(sum(1 for r in batch if r is not _STOP))
                self.logger.error("cannot write the namespace audit log", path=path,
                                  error=str(e))
                if f is not None:
                    with contextlib.suppress(OSError):
                        f.close()
                f = None
            if batch[-1] is _STOP:
                if f is not None:
                    f.close()
                return


def _open(path: str) -> Any:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    f = os.fdopen(fd, "ab")
    f.seek(0, os.SEEK_END)
    return f
