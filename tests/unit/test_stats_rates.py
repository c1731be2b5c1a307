"""usage_nano_cores from two samples of the same cgroup."""

from __future__ import annotations

from shim.stats import rates
from shim.stats.rates import CpuRates, nano_cores

S = 1_000_000_000


def test_nano_cores_from_two_samples() -> None:
    # 0.5 s of CPU over 2 s: a quarter of a core.
    assert nano_cores(0, 0, 2 * S, S // 2) == 250_000_000
    # Two full cores over 1 s.
    assert nano_cores(10 * S, 5 * S, 11 * S, 7 * S) == 2 * S


def test_nano_cores_degenerate_windows() -> None:
    assert nano_cores(5, 100, 5, 200) == 0  # empty window
    assert nano_cores(0, 500, S, 100) == 0  # counter went back


def test_first_sample_is_zero_then_rate() -> None:
    r = CpuRates()
    assert r.rate("c", 10 * S, 3 * S) == 0
    assert r.rate("c", 12 * S, 4 * S) == S // 2
    assert r.rate("other", 12 * S, 4 * S) == 0


def test_samples_too_close_keep_the_last_rate_and_window() -> None:
    r = CpuRates()
    r.rate("c", 0, 0)
    assert r.rate("c", 2 * S, S) == S // 2
    # 10 ms later: too short a window; the previous rate is answered, the sample not kept.
    assert r.rate("c", 2 * S + 10_000_000, S + 10_000_000) == S // 2
    # The next measurement spans from the kept sample (2 s).
    assert r.rate("c", 4 * S, 3 * S) == S


def test_forget_stale() -> None:
    r = CpuRates()
    r.rate("old", 0, 0)
    r.rate("new", rates.FORGET_NS, 0)
    r.forget_stale(rates.FORGET_NS + 1)
    assert len(r) == 1
    r.forget("new")
    assert len(r) == 0
