"""Prometheus metrics of image pulls (served with the daemon's other metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

PULLS = Counter(
    "tether_image_pulls",
    "PullImage calls by outcome: success, or the error kind (notfound, unauthenticated, ...).",
    ["outcome"],
)
PULL_BYTES = Counter(
    "tether_image_pull_bytes", "Bytes of blobs downloaded from registries (not those reused)."
)
LAYER_REUSE = Counter(
    "tether_image_layer_reuse",
    "Layers a pull did not download because their blob was already in the blob store.",
)
PULLS_COALESCED = Counter(
    "tether_image_pulls_coalesced",
    "PullImage calls that joined a pull of the same image already under way.",
)
PULL_DURATION = Histogram(
    "tether_image_pull_duration_seconds",
    "PullImage latency, from the request to the image being usable.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0),
)
