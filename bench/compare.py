"""Pairing of two runtimes in one run, and the ratios between them.

Rounds are interleaved so that slow drifts of the machine (page cache, other load) hit
both runtimes alike: round 0 on A, round 0 on B, round 1 on A, ... Ratios are B/A of a
statistic of the same step ("tether/containerd" when A is containerd and B is tether:
below 1.0 means B is faster or smaller).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

from bench.stats import Summary, ratio

T = TypeVar("T")

RATIO_STATS: tuple[str, ...] = ("p50", "p95", "p99")


def interleave(rounds: int, targets: Sequence[T]) -> list[tuple[int, T]]:
    """[(0, A), (0, B), (1, A), (1, B), ...]: every round on every target, in turn."""
    return [(i, t) for i in range(rounds) for t in targets]


def ratio_label(a: str, b: str) -> str:
    return f"{b}/{a}"


def step_ratios(
    a: Mapping[str, Summary], b: Mapping[str, Summary], stats: Sequence[str] = RATIO_STATS
) -> dict[str, dict[str, float | None]]:
    """For every step both have: {stat: b/a}."""
    out: dict[str, dict[str, float | None]] = {}
    for step, sa in a.items():
        sb = b.get(step)
        if sb is None:
            continue
        out[step] = {s: ratio(sb.get(s), sa.get(s)) for s in stats}
    return out


def metric_ratios(
    a: Mapping[str, float], b: Mapping[str, float]
) -> dict[str, float | None]:
    return {k: ratio(b[k], a[k]) for k in a if k in b}
