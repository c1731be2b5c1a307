"""Prometheus metrics of the daemon; the HTTP endpoint serves them with the process metrics."""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server

# 1 ms .. 60 s: List calls sit at the low end, pulls and pod starts at the high end.
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)

OPERATIONS = Counter(
    "tether_operations", "CRI operations served, by RPC name.", ["operation"]
)
OPERATION_ERRORS = Counter(
    "tether_operations_errors", "CRI operations that failed, by RPC name and gRPC code.",
    ["operation", "code"],
)
OPERATION_LATENCY = Histogram(
    "tether_operations_latency_seconds", "Latency of CRI operations, by RPC name.",
    ["operation"], buckets=LATENCY_BUCKETS,
)


def serve(address: str, port: int) -> None:
    """Start the /metrics endpoint in a daemon thread (prometheus-client's own server)."""
    start_http_server(port, addr=address, registry=REGISTRY)
