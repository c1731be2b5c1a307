"""Bytes and inodes of containers' writable layers (``<container_dir>/upper``), cached.

The walk is the one expensive part of a stats call, so each container's result is kept for
``TTL_S`` seconds; the kubelet's polling then costs one walk per container per period.
"""

from __future__ import annotations

import threading
import time

from shim.images.fsusage import Usage, measure

TTL_S = 10.0


class LayerCache:
    def __init__(self, ttl: float = TTL_S) -> None:
        self.ttl = ttl
        self._cache: dict[str, tuple[float, Usage]] = {}
        self._lock = threading.Lock()

    def usage(self, key: str, upper: str) -> Usage:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self.ttl and hit[1].path == upper:
            return hit[1]
        u = measure(upper, time.time_ns())
        with self._lock:
            self._cache[key] = (now, u)
        return u

    def forget_except(self, keys: set[str]) -> None:
        with self._lock:
            for k in [k for k in self._cache if k not in keys]:
                del self._cache[k]
