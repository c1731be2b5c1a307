"""Prometheus metrics of the namespace-sharing policy (served with the daemon's others)."""

from __future__ import annotations

from prometheus_client import Counter

SHARING = Counter(
    "tether_namespace_sharing",
    "Decisions of the namespace-sharing policy, by kind of sharing and effective verdict "
    "(allow: granted, deny: refused, audit: granted and recorded as audited).",
    ["kind", "verdict"],
)
AUDIT_DROPPED = Counter(
    "tether_namespace_audit_dropped",
    "Audit lines of the namespace-sharing policy not written (queue full, or the file "
    "could not be written).",
)
