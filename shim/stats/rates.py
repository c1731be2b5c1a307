"""``usage_nano_cores``: the CPU rate between two cumulative samples of the same cgroup.

The previous sample of each container (and pod) is kept in memory. Callers close together
(the kubelet and a ``crictl stats`` at once) would measure over a tiny window: a sample newer
than ``MIN_WINDOW_NS`` than the kept one is answered with the last rate and not kept.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

MIN_WINDOW_NS = 1_000_000_000
FORGET_NS = 10 * 60 * 1_000_000_000  # samples of objects no one asked about for this long


def nano_cores(prev_ts: int, prev_usage: int, ts: int, usage: int) -> int:
    """Cores used between two samples, in billionths of a core; 0 when the window is empty or
    the counter went back (a restarted container, a pod whose summed cgroups changed)."""
    if ts <= prev_ts or usage < prev_usage:
        return 0
    return (usage - prev_usage) * 1_000_000_000 // (ts - prev_ts)


@dataclass
class _Sample:
    ts: int
    usage: int
    rate: int
    seen: int  # when last asked about


class CpuRates:
    """Thread-safe: collectors run in worker threads."""

    def __init__(self) -> None:
        self._samples: dict[str, _Sample] = {}
        self._lock = threading.Lock()

    def rate(self, key: str, ts: int, usage: int) -> int:
        with self._lock:
            prev = self._samples.get(key)
            if prev is None:
                self._samples[key] = _Sample(ts, usage, 0, ts)
                return 0
            prev.seen = ts
            if 0 <= ts - prev.ts < MIN_WINDOW_NS and usage >= prev.usage:
                return prev.rate
            r = nano_cores(prev.ts, prev.usage, ts, usage)
            self._samples[key] = _Sample(ts, usage, r, ts)
            return r

    def forget_stale(self, now_ns: int) -> None:
        with self._lock:
            for key in [k for k, s in self._samples.items() if now_ns - s.seen > FORGET_NS]:
                del self._samples[key]

    def forget(self, key: str) -> None:
        with self._lock:
            self._samples.pop(key, None)

    def __len__(self) -> int:
        return len(self._samples)
