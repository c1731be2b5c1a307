"""Prometheus metrics of the streaming server."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

SESSIONS = Gauge("tether_streaming_sessions", "Streaming sessions open now, by kind.", ["kind"])
SESSIONS_TOTAL = Counter("tether_streaming_sessions_served",
                         "Streaming sessions served, by kind and transport.", ["kind", "transport"])
BYTES = Counter("tether_streaming_bytes", "Bytes through streaming sessions, by kind and "
                "direction (in: from the client).", ["kind", "direction"])
REFUSED = Counter("tether_streaming_refused", "Streaming connections refused, by reason.",
                  ["reason"])
