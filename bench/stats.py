"""Percentiles and latency summaries.

Percentiles use linear interpolation between closest ranks (numpy's default, "type 7"):
for sorted samples x[0..n-1] and q in [0, 100], the rank is ``(n - 1) * q / 100``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

PERCENTILES: tuple[float, ...] = (50.0, 95.0, 99.0)


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of ``samples``; raises ValueError when empty."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} outside 0..100")
    xs = sorted(samples)
    rank = (len(xs) - 1) * q / 100.0
    lo = math.floor(rank)
    hi = math.ceil(rank)
    if lo == hi:
        return float(xs[lo])
    return float(xs[lo] + (xs[hi] - xs[lo]) * (rank - lo))


@dataclass(frozen=True)
class Summary:
    """A latency distribution in milliseconds."""

    n: int
    min_ms: float
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    def to_dict(self) -> dict[str, float | int]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def get(self, stat: str) -> float:
        """``get("p50")`` -> p50_ms."""
        value = getattr(self, f"{stat}_ms")
        return float(value)


def summarize(seconds: Iterable[float]) -> Summary | None:
    """Summary of durations given in seconds (reported in ms); None when there are none."""
    ms = [s * 1000.0 for s in seconds]
    if not ms:
        return None
    return Summary(
        n=len(ms),
        min_ms=min(ms),
        mean_ms=sum(ms) / len(ms),
        p50_ms=percentile(ms, 50),
        p95_ms=percentile(ms, 95),
        p99_ms=percentile(ms, 99),
        max_ms=max(ms),
    )


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def ratio(b: float | None, a: float | None) -> float | None:
    """b / a, or None when either is missing or a is zero."""
    if a is None or b is None or a <= 0.0:
        return None
    return b / a
