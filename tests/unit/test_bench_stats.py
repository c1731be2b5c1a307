"""bench.stats: percentiles (linear interpolation, numpy's default) and summaries."""

from __future__ import annotations

import pytest

from bench.stats import percentile, ratio, summarize


def test_percentile_single_sample() -> None:
    assert percentile([7.0], 50) == 7.0
    assert percentile([7.0], 99) == 7.0


def test_percentile_interpolates_between_ranks() -> None:
    xs = [1.0, 2.0, 3.0, 4.0]
    assert percentile(xs, 0) == 1.0
    assert percentile(xs, 100) == 4.0
    assert percentile(xs, 50) == pytest.approx(2.5)
    # rank = 3 * 0.95 = 2.85 -> 3 + 0.85 * (4 - 3)
    assert percentile(xs, 95) == pytest.approx(3.85)


def test_percentile_ignores_input_order() -> None:
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile(list(range(100, 0, -1)), 99) == pytest.approx(99.01)


def test_percentile_errors() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize_converts_seconds_to_ms() -> None:
    s = summarize([0.001 * i for i in range(1, 101)])  # 1..100 ms
    assert s is not None
    assert s.n == 100
    assert s.min_ms == pytest.approx(1.0)
    assert s.max_ms == pytest.approx(100.0)
    assert s.p50_ms == pytest.approx(50.5)
    assert s.p95_ms == pytest.approx(95.05)
    assert s.p99_ms == pytest.approx(99.01)
    assert s.mean_ms == pytest.approx(50.5)
    assert s.get("p95") == s.p95_ms
    d = s.to_dict()
    assert d["n"] == 100 and d["p50_ms"] == 50.5


def test_summarize_empty() -> None:
    assert summarize([]) is None


def test_ratio() -> None:
    assert ratio(1.0, 2.0) == 0.5
    assert ratio(None, 2.0) is None
    assert ratio(1.0, None) is None
    assert ratio(1.0, 0.0) is None
