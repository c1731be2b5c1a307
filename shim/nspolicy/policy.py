"""What the RPC edge calls: decide, refuse a denial, record every decision."""

from __future__ import annotations

from datetime import UTC, datetime

from shim import log
from shim.config import NamespacesConfig
from shim.errors import PermissionDenied
from shim.nspolicy import metrics, rules
from shim.nspolicy.audit import AuditLog
from shim.nspolicy.rules import Decision, Sharing, Subject


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class NamespacePolicy:
    def __init__(self, cfg: NamespacesConfig) -> None:
        self.cfg = cfg
        self.audit = AuditLog(cfg.audit_log, cfg.audit_log_max_bytes, cfg.audit_log_keep)
        self.logger = log.get("nspolicy")

    def reload(self, cfg: NamespacesConfig) -> None:
        self.cfg = cfg
        self.audit.configure(cfg.audit_log, cfg.audit_log_max_bytes, cfg.audit_log_keep)

    def check(self, rpc: str, subject: Subject, sharings: list[Sharing]) -> list[Decision]:
        """The decisions for a request; PermissionDenied (after recording the denials) when
        any is a denial. The caller records the granted ones with ``record`` once the ids
        are known."""
        if self.cfg.mode == "off" or not sharings:
            return []
        decisions = rules.decide(self.cfg, subject, sharings)
        refused = rules.denied(decisions)
        if refused:
            # What was asked for together is refused together: only the denials are lines.
            self.record(rpc, subject, refused)
            self.logger.warning("namespace sharing denied", kinds=[d.sharing.kind
                                                                   for d in refused],
                                pod=f"{subject.pod_namespace}/{subject.pod_name}",
                                container=subject.container_name)
            raise PermissionDenied(rules.denial_message(refused[0], subject))
        return decisions

    def record(self, rpc: str, subject: Subject, decisions: list[Decision]) -> None:
        now = _now()
        for d in decisions:
            metrics.SHARING.labels(d.sharing.kind, d.verdict).inc()
            self.audit.write(rules.audit_record(d, subject, rpc, now))

    def close(self) -> None:
        self.audit.close()
