"""Which rule governs a kind of sharing, and what the decision is. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from shim.config import NamespaceRule, NamespacesConfig

# What each kind is, in words, for denial messages.
DESCRIPTIONS = {
    "host_network": "the node's network namespace",
    "host_pid": "the node's PID namespace",
    "host_ipc": "the node's IPC namespace",
    "host_user": "the node's user namespace",
    "target_pid": "another container's PID namespace",
    "pod_pid": "a pod-wide PID namespace",
    "privileged_host": "a privileged container in the node's namespaces",
}


@dataclass(frozen=True)
class Subject:
    """Who asks: the pod (and, for CreateContainer, the container). Ids are "" while unknown."""

    pod_name: str
    pod_namespace: str
    pod_uid: str
    runtime_handler: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    pod_id: str = ""
    container_name: str = ""
    container_id: str = ""

    @property
    def is_container(self) -> bool:
        return bool(self.container_name)


@dataclass(frozen=True)
class NamespaceRef:
    """A namespace involved in a sharing: whose it is, and its inode when it exists already."""

    owner: str  # node | pod | container
    inode: int | None = None
    container_id: str = ""  # owner container: the container it belongs to


@dataclass(frozen=True)
class Sharing:
    """One kind of sharing a request asks for, with the namespaces (type -> ref) it involves."""

    kind: str
    namespaces: Mapping[str, NamespaceRef] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    sharing: Sharing
    verdict: str  # the effective one: allow (granted), deny (refused), audit (granted, flagged)
    mode: str
    rule_index: int | None = None
    rule: NamespaceRule | None = None

    @property
    def granted(self) -> bool:
        return self.verdict != "deny"

    def rule_label(self) -> str:
        if self.rule is None or self.rule_index is None:
            return "no rule"
        name = f" {self.rule.name!r}" if self.rule.name else ""
        return f"namespaces.rules[{self.rule_index}]{name} (kind {self.rule.kind}, verdict " \
               f"{self.rule.verdict})"


def _any_glob(value: str, patterns: Iterable[str]) -> bool:
    return any(fnmatchcase(value, p) for p in patterns)


def _all_match(have: Mapping[str, str], want: Mapping[str, str]) -> bool:
    return all(k in have and fnmatchcase(have[k], v) for k, v in want.items())


def matches(rule: NamespaceRule, kind: str, subject: Subject) -> bool:
    """The rule governs this kind for this subject: its kind, and every match field it sets."""
    if rule.kind != kind:
        return False
    if rule.pod_namespaces and not _any_glob(subject.pod_namespace, rule.pod_namespaces):
        return False
    if rule.runtime_handlers and not _any_glob(subject.runtime_handler, rule.runtime_handlers):
        return False
    return _all_match(subject.labels, rule.labels) and \
        _all_match(subject.annotations, rule.annotations)


def first_match(rules: list[NamespaceRule], kind: str,
                subject: Subject) -> tuple[int, NamespaceRule] | None:
    for i, rule in enumerate(rules):
        if matches(rule, kind, subject):
            return i, rule
    return None


def decide(cfg: NamespacesConfig, subject: Subject, sharings: Iterable[Sharing]) -> list[Decision]:
    """One decision per sharing; none at all when the policy is off."""
    if cfg.mode == "off":
        return []
    out = []
    for s in sharings:
        hit = first_match(cfg.rules, s.kind, subject)
        if hit is None:
            # No rule: allowed, as without a policy; audit mode records it as audited.
            verdict = "audit" if cfg.mode == "audit" else "allow"
            out.append(Decision(s, verdict, cfg.mode))
            continue
        index, rule = hit
        verdict = rule.verdict
        if verdict == "deny" and cfg.mode != "enforce":
            verdict = "audit"  # audit mode: a deny rule is only recorded
        out.append(Decision(s, verdict, cfg.mode, index, rule))
    return out


def denied(decisions: Iterable[Decision]) -> list[Decision]:
    return [d for d in decisions if not d.granted]


def who(subject: Subject) -> str:
    pod = f"pod {subject.pod_namespace}/{subject.pod_name}"
    return f"container {subject.container_name!r} of {pod}" if subject.is_container else pod


def denial_message(decision: Decision, subject: Subject) -> str:
    kind = decision.sharing.kind
    return (f"namespace policy: {decision.rule_label()} denies {kind} "
            f"({DESCRIPTIONS.get(kind, kind)}) to {who(subject)}")


def audit_record(decision: Decision, subject: Subject, rpc: str, time: str) -> dict[str, Any]:
    """The audit line of one decision (docs/namespaces.md has its format)."""
    rule: dict[str, Any] | None = None
    if decision.rule is not None:
        rule = {"index": decision.rule_index, "name": decision.rule.name,
                "kind": decision.rule.kind, "verdict": decision.rule.verdict}
    namespaces: dict[str, Any] = {}
    for ns_type, ref in sorted(decision.sharing.namespaces.items()):
        entry: dict[str, Any] = {"owner": ref.owner, "inode": ref.inode}
        if ref.container_id:
            entry["container_id"] = ref.container_id
        namespaces[ns_type] = entry
    return {
        "time": time,
        "rpc": rpc,
        "mode": decision.mode,
        "kind": decision.sharing.kind,
        "verdict": decision.verdict,
        "granted": decision.granted,
        "rule": rule,
        "pod": {"name": subject.pod_name, "namespace": subject.pod_namespace,
                "uid": subject.pod_uid, "id": subject.pod_id or None},
        "container": ({"name": subject.container_name, "id": subject.container_id or None}
                      if subject.is_container else None),
        "runtime_handler": subject.runtime_handler,
        "namespaces": namespaces,
    }
