"""Every CRI workload by name (bench.workloads and bench.streaming)."""

from __future__ import annotations

from bench.streaming import Streaming
from bench.workloads import CRI_WORKLOADS, Workload

_ALL: tuple[type[Workload], ...] = (*CRI_WORKLOADS, Streaming)
WORKLOADS: dict[str, type[Workload]] = {w.name: w for w in _ALL}
