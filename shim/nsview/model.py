"""The namespace report of ``tether ns``, and ``tether ns check``'s findings. Pure: facts about
pods and containers (from the CRI or the store) and the inodes read from ``/proc`` come in as
arguments."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Every namespace type lsns shows, by its name under /proc/<pid>/ns/.
KINDS = ("net", "ipc", "uts", "pid", "mnt", "user", "cgroup")
# OCI runtime-spec linux.namespaces[].type -> /proc name.
OCI_KIND = {"network": "net", "ipc": "ipc", "uts": "uts", "pid": "pid", "mount": "mnt",
            "user": "user", "cgroup": "cgroup"}

NODE, POD, CONTAINER, UNKNOWN = "node", "pod", "container", "unknown"


@dataclass(frozen=True)
class PodFacts:
    id: str
    name: str
    namespace: str
    state: str
    pid: int  # the pause-holder; 0 when none runs
    modes: Mapping[str, str]  # net/ipc/uts/pid -> POD | NODE | CONTAINER (CRI names)
    recorded: Mapping[str, int] = field(default_factory=dict)  # pinned namespaces' inodes
    privileged: bool = False
    host_ports: tuple[int, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ContainerFacts:
    id: str
    pod_id: str
    name: str
    state: str
    pid: int  # the container's init; 0 when it does not run
    privileged: bool = False
    # OCI linux.namespaces: /proc kind -> path joined ("" = a new one); an absent kind is
    # inherited from the runtime, i.e. the node's.
    spec_namespaces: Mapping[str, str] | None = None


@dataclass(frozen=True)
class NsEntry:
    kind: str
    inode: int | None
    owner: str  # node | pod | container | unknown
    seen: bool  # read from /proc now (else: what the records say)
    shared_with: tuple[str, ...] = ()


@dataclass(frozen=True)
class Subject:
    """The pause-holder of a pod (``container`` None) or one of its containers."""

    pod: PodFacts
    container: ContainerFacts | None
    namespaces: tuple[NsEntry, ...]

    @property
    def label(self) -> str:
        return self.pod.label + (f"/{self.container.name}" if self.container else "")

    def ns(self, kind: str) -> NsEntry:
        return next(e for e in self.namespaces if e.kind == kind)


@dataclass(frozen=True)
class Report:
    source: str  # "cri" (the daemon answered) or "store" (read while it is down)
    node: Mapping[str, int]
    subjects: tuple[Subject, ...]


@dataclass(frozen=True)
class Finding:
    rule: str
    pod: str
    container: str
    message: str


# tether ns check: short on purpose; each is a way out of the pod onto the node.
RULES: dict[str, str] = {
    "host-pid-privileged": "a privileged container in the node's PID namespace can ptrace, "
                           "signal and enter every process on the node",
    "host-network-hostport": "a pod in the node's network namespace with hostPort mappings "
                             "binds those ports on every node address, beside the node's "
                             "own services",
    "host-ipc": "a pod in the node's IPC namespace reads and writes the node's shared memory "
                "and message queues",
    "host-user-privileged": "a privileged container in the node's user namespace: its root "
                            "is root on the node",
}


def _pod_entry(pod: PodFacts, kind: str, live: Mapping[str, int] | None,
               node: Mapping[str, int]) -> NsEntry:
    if live and kind in live:
        ino: int | None = live[kind]
        seen = True
    else:
        seen = False
        # The pause-holder stays in the node's mount, user and cgroup namespaces.
        mode = pod.modes.get(kind, "NODE")
        ino = pod.recorded.get(kind) if mode == "POD" else node.get(kind)
    owner = UNKNOWN if ino is None else NODE if ino == node.get(kind) else POD
    return NsEntry(kind, ino, owner, seen)


def _container_entry(c: ContainerFacts, kind: str, live: Mapping[str, int] | None,
                     pod: Subject, node: Mapping[str, int]) -> NsEntry:
    pod_ns = pod.ns(kind)
    if live and kind in live:
        ino: int | None = live[kind]
        if ino == node.get(kind):
            owner = NODE
        elif pod_ns.owner == POD and ino == pod_ns.inode:
            owner = POD
        else:
            owner = CONTAINER
        return NsEntry(kind, ino, owner, True)
    spec = c.spec_namespaces
    if spec is None:
        return NsEntry(kind, None, UNKNOWN, False)
    if kind not in spec:
        return NsEntry(kind, node.get(kind), NODE, False)
    path = spec[kind]
    if not path:
        return NsEntry(kind, None, CONTAINER, False)
    if pod_ns.owner == POD and f"/{pod.pod.id}" in path:  # a pin: <run>/ns/<kind>/<pod id>
        return NsEntry(kind, pod_ns.inode, POD, False)
    return NsEntry(kind, None, CONTAINER, False)  # another container's (pid TARGET)


def build(
    pods: Iterable[PodFacts],
    containers: Iterable[ContainerFacts],
    live: Mapping[int, Mapping[str, int]],
    node: Mapping[str, int],
    source: str,
) -> Report:
    """``live``: pid -> the inodes read from /proc/<pid>/ns (only for processes that run)."""
    by_pod: dict[str, list[ContainerFacts]] = {}
    for c in containers:
        by_pod.setdefault(c.pod_id, []).append(c)
    subjects: list[Subject] = []
    for pod in sorted(pods, key=lambda p: (p.namespace, p.name, p.id)):
        holder = live.get(pod.pid) if pod.pid else None
        ps = Subject(pod, None, tuple(_pod_entry(pod, k, holder, node) for k in KINDS))
        subjects.append(ps)
        for c in sorted(by_pod.get(pod.id, []), key=lambda c: (c.name, c.id)):
            clive = live.get(c.pid) if c.pid else None
            subjects.append(Subject(pod, c, tuple(
                _container_entry(c, k, clive, ps, node) for k in KINDS)))
    # who else is in each namespace: every other subject with the same (kind, inode)
    holders: dict[tuple[str, int], list[str]] = {}
    for s in subjects:
        for e in s.namespaces:
            if e.inode is not None:
                holders.setdefault((e.kind, e.inode), []).append(s.label)
    out = []
    for s in subjects:
        entries = tuple(
            e if e.inode is None else NsEntry(
                e.kind, e.inode, e.owner, e.seen,
                tuple(x for x in holders[(e.kind, e.inode)] if x != s.label))
            for e in s.namespaces)
        out.append(Subject(s.pod, s.container, entries))
    return Report(source, dict(node), tuple(out))


def check(report: Report) -> list[Finding]:
    found: list[Finding] = []

    def add(rule: str, s: Subject, what: str) -> None:
        found.append(Finding(rule, s.pod.label, s.container.name if s.container else "",
                             f"{what}: {RULES[rule]}"))

    for s in report.subjects:
        c = s.container
        if c is None:
            if s.ns("net").owner == NODE and s.pod.host_ports:
                ports = ",".join(str(p) for p in s.pod.host_ports)
                add("host-network-hostport", s, f"pod {s.label} (hostPort {ports})")
            if s.ns("ipc").owner == NODE:
                add("host-ipc", s, f"pod {s.label}")
            continue
        if not c.privileged:
            continue
        if s.ns("pid").owner == NODE:
            add("host-pid-privileged", s, f"container {s.label}")
        if s.ns("user").owner == NODE:
            add("host-user-privileged", s, f"container {s.label}")
    return found


# --- output ----------------------------------------------------------------------------------

def _entry_json(e: NsEntry) -> dict[str, Any]:
    return {"inode": e.inode, "owner": e.owner, "seen": e.seen, "sharedWith": list(e.shared_with)}


def to_json(report: Report) -> dict[str, Any]:
    pods: list[dict[str, Any]] = []
    for s in report.subjects:
        nss = {e.kind: _entry_json(e) for e in s.namespaces}
        if s.container is None:
            p = s.pod
            pods.append({"id": p.id, "name": p.name, "namespace": p.namespace,
                         "state": p.state, "pid": p.pid, "privileged": p.privileged,
                         "hostPorts": list(p.host_ports), "namespaces": nss, "containers": []})
        else:
            c = s.container
            pods[-1]["containers"].append({"id": c.id, "name": c.name, "state": c.state,
                                           "pid": c.pid, "privileged": c.privileged,
                                           "namespaces": nss})
    return {"source": report.source, "node": dict(report.node), "pods": pods}


def findings_json(findings: list[Finding]) -> dict[str, Any]:
    return {"findings": [{"rule": f.rule, "pod": f.pod, "container": f.container,
                          "message": f.message} for f in findings]}


def _shared(e: NsEntry, limit: int = 3) -> str:
    names = list(e.shared_with)
    if not names:
        return "-"
    more = f" +{len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def render(report: Report) -> str:
    head = ("POD", "CONTAINER", "PID", "NS", "INODE", "OWNER", "SHARED WITH")
    rows: list[tuple[str, ...]] = []
    for s in report.subjects:
        who = s.container.name if s.container else "(pod)"
        pid = s.container.pid if s.container else s.pod.pid
        for i, e in enumerate(s.namespaces):
            ino = "-" if e.inode is None else str(e.inode) + ("" if e.seen else "*")
            rows.append((s.pod.label if i == 0 else "", who if i == 0 else "",
                         (str(pid) if pid else "-") if i == 0 else "",
                         e.kind, ino, e.owner, _shared(e)))
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1]
             for r in [head, *rows]]
    lines.append(f"source: {report.source}; * = from the records (the process does not run)")
    return "\n".join(x.rstrip() for x in lines) + "\n"


def render_findings(findings: list[Finding]) -> str:
    if not findings:
        return "no risky namespace sharing found\n"
    return "".join(f"{f.rule}: {f.message}\n" for f in findings)


def dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def spec_namespaces(runtime_spec: Any) -> dict[str, str] | None:
    """OCI config.json's linux.namespaces as /proc kind -> path ("" = new); None unknown."""
    if not isinstance(runtime_spec, dict):
        return None
    out: dict[str, str] = {}
    for ns in runtime_spec.get("linux", {}).get("namespaces", []):
        kind = OCI_KIND.get(ns.get("type", ""))
        if kind:
            out[kind] = ns.get("path", "")
    return out
