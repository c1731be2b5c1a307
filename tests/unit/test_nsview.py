"""`tether ns`'s pure report and checks, and the cgroup namespace rule of the spec."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from podsandbox.cgroups import Layout
from podsandbox.types import State
from shim.nsview import model
from shim.nsview.model import ContainerFacts, PodFacts
from shim.rpc.container_convert import cgroup_namespace
from shim.store import ContainerRecord, SandboxRecord, Store, readonly
from shim.store.db import SchemaTooNew
from tests.unit.test_oci_spec import RT, gen, ns_of

NODE = {"net": 1, "ipc": 2, "uts": 3, "pid": 4, "mnt": 5, "user": 6, "cgroup": 7}
POD_MODES = {"net": "POD", "ipc": "POD", "uts": "POD", "pid": "CONTAINER"}


def holder(net: int = 101, ipc: int = 102, uts: int = 103, pid: int = 4) -> dict[str, int]:
    return {**NODE, "net": net, "ipc": ipc, "uts": uts, "pid": pid}


def pod(name: str, pid: int, **kw: object) -> PodFacts:
    base = PodFacts(id=f"id-{name}", name=name, namespace="default", state="ready", pid=pid,
                    modes=POD_MODES, recorded={"net": 101, "ipc": 102, "uts": 103})
    return replace(base, **kw)  # type: ignore[arg-type]


def ctr(name: str, pod_name: str, pid: int, **kw: object) -> ContainerFacts:
    base = ContainerFacts(id=f"c-{name}", pod_id=f"id-{pod_name}", name=name, state="running",
                          pid=pid)
    return replace(base, **kw)  # type: ignore[arg-type]


def owners(s: model.Subject) -> dict[str, str]:
    return {e.kind: e.owner for e in s.namespaces}


def test_owners_from_live_inodes() -> None:
    p = pod("web", 10)
    c = ctr("app", "web", 11)
    live = {10: holder(), 11: {**holder(), "pid": 201, "mnt": 202}}
    r = model.build([p], [c], live, NODE, "cri")
    ps, cs = r.subjects
    assert owners(ps) == {"net": "pod", "ipc": "pod", "uts": "pod", "pid": "node",
                          "mnt": "node", "user": "node", "cgroup": "node"}
    assert owners(cs) == {"net": "pod", "ipc": "pod", "uts": "pod", "pid": "container",
                          "mnt": "container", "user": "node", "cgroup": "node"}
    assert cs.ns("net").shared_with == ("default/web",)
    assert ps.ns("net").shared_with == ("default/web/app",)
    assert cs.ns("pid").shared_with == ()
    assert all(e.seen for e in cs.namespaces)


def test_shared_pid_and_who_else_shares() -> None:
    p = pod("shared", 10, modes={**POD_MODES, "pid": "POD"}, recorded={"pid": 104})
    a, b = ctr("a", "shared", 11), ctr("b", "shared", 12)
    h = holder(pid=104)
    live = {10: h, 11: {**h, "mnt": 301}, 12: {**h, "mnt": 302}}
    r = model.build([p], [a, b], live, NODE, "cri")
    ps, sa, sb = r.subjects
    assert ps.ns("pid").owner == "pod"
    assert sa.ns("pid").owner == sb.ns("pid").owner == "pod"
    assert sa.ns("pid").shared_with == ("default/shared", "default/shared/b")
    assert sa.ns("mnt").owner == "container"


def test_host_network_pod_and_target_pid() -> None:
    p = pod("host", 10, modes={"net": "NODE", "ipc": "POD", "uts": "NODE", "pid": "CONTAINER"})
    live = {10: {**NODE, "ipc": 102}, 11: {**NODE, "ipc": 102, "pid": 500},
            12: {**NODE, "ipc": 102, "pid": 500}}
    r = model.build([p], [ctr("a", "host", 11), ctr("dbg", "host", 12)], live, NODE, "cri")
    ps, _, sd = r.subjects
    assert ps.ns("net").owner == "node" and ps.ns("uts").owner == "node"
    # a debug container joining another's PID namespace (TARGET): a container's, shared
    assert sd.ns("pid").owner == "container"
    assert sd.ns("pid").shared_with == ("default/host/a",)


def test_records_stand_in_when_nothing_runs() -> None:
    p = pod("down", 0)
    spec = {"network": "/run/tether/ns/net/id-down", "ipc": "/run/tether/ns/ipc/id-down",
            "uts": "/run/tether/ns/uts/id-down", "pid": "", "mnt": ""}
    c = ctr("app", "down", 0, state="exited", spec_namespaces=None)
    c2 = ctr("b", "down", 0, state="created",
             spec_namespaces={model.OCI_KIND.get(k, k): v for k, v in spec.items()})
    r = model.build([p], [c, c2], {}, NODE, "store")
    ps, sb, sa = r.subjects  # containers sort by name: app, b -> "app" first
    assert sb.container is not None and sb.container.name == "app"
    assert ps.ns("net").inode == 101 and not ps.ns("net").seen
    assert ps.ns("mnt").inode == NODE["mnt"]
    assert all(e.owner == "unknown" for e in sb.namespaces)  # no spec, no process
    assert sa.ns("net").owner == "pod" and sa.ns("net").inode == 101
    assert sa.ns("pid").owner == "container" and sa.ns("pid").inode is None
    assert sa.ns("cgroup").owner == "node"  # not in the spec: inherited


def test_check_flags_each_rule_and_a_plain_pod_is_clean() -> None:
    plain = pod("plain", 10)
    live = {10: holder(), 11: {**holder(), "pid": 201, "mnt": 202}}
    clean = model.build([plain], [ctr("app", "plain", 11, privileged=True)],
                        {10: holder(), 11: {**holder(), "pid": 201, "mnt": 202, "user": 900}},
                        NODE, "cri")
    assert model.check(clean) == []
    assert model.check(model.build([plain], [ctr("app", "plain", 11)], live, NODE, "cri")) == []

    risky = pod("risky", 20, modes={"net": "NODE", "ipc": "NODE", "uts": "NODE", "pid": "NODE"},
                host_ports=(8080,), privileged=True)
    r = model.build([risky], [ctr("root", "risky", 21, privileged=True)],
                    {20: NODE, 21: {**NODE, "mnt": 400}}, NODE, "cri")
    rules = sorted(f.rule for f in model.check(r))
    assert rules == ["host-ipc", "host-network-hostport", "host-pid-privileged",
                     "host-user-privileged"]
    assert set(rules) == set(model.RULES)
    # not privileged: only the pod-level ones
    r2 = model.build([replace(risky, host_ports=())], [ctr("app", "risky", 21)],
                     {20: NODE, 21: {**NODE, "mnt": 400}}, NODE, "cri")
    assert [f.rule for f in model.check(r2)] == ["host-ipc"]


def test_json_and_table() -> None:
    r = model.build([pod("web", 10)], [ctr("app", "web", 11)],
                    {10: holder(), 11: {**holder(), "pid": 201}}, NODE, "cri")
    doc = json.loads(model.dumps(model.to_json(r)))
    assert doc["source"] == "cri" and doc["node"] == NODE
    (p,) = doc["pods"]
    assert p["namespaces"]["net"] == {"inode": 101, "owner": "pod", "seen": True,
                                      "sharedWith": ["default/web/app"]}
    assert p["containers"][0]["namespaces"]["pid"]["inode"] == 201
    assert set(p["containers"][0]["namespaces"]) == set(model.KINDS)
    table = model.render(r)
    assert table.splitlines()[0].split() == ["POD", "CONTAINER", "PID", "NS", "INODE", "OWNER",
                                             "SHARED", "WITH"]
    assert "default/web" in table and "201" in table
    assert model.render_findings([]) == "no risky namespace sharing found\n"


def test_spec_namespaces_parsing() -> None:
    assert model.spec_namespaces(None) is None
    spec = {"linux": {"namespaces": [{"type": "network", "path": "/p"}, {"type": "mount"}]}}
    assert model.spec_namespaces(spec) == {"net": "/p", "mnt": ""}


def test_cgroup_namespace_private_on_v2_host_otherwise() -> None:
    v1 = gen()
    v2 = gen(rt=replace(RT, cgroup_v2=True))
    assert "cgroup" not in ns_of(v1) and ns_of(v2)["cgroup"] is None  # a new one, no path
    assert cgroup_namespace(v1) == "host"
    assert cgroup_namespace(v2) == "private"
    assert cgroup_namespace(None) == ""
    # a hybrid host (v1 controllers beside the unified tree) is not v2: the host's namespace
    hybrid = Layout(v1=(("memory", "/sys/fs/cgroup/memory"),), v2="/sys/fs/cgroup/unified")
    assert hybrid.mode == "hybrid"
    assert Layout(v1=(), v2="/sys/fs/cgroup").mode == "v2"


def test_store_read_only_sees_committed_records_and_writes_nothing(tmp_path: Path) -> None:
    db_path = str(tmp_path / "tether.db")
    with pytest.raises(FileNotFoundError):
        readonly.read(db_path)
    s = Store(db_path)
    s.write_sync([(s.sandboxes, SandboxRecord(id="p1", name="web", state=State.READY), False),
                  (s.containers, ContainerRecord(id="c1", sandbox_id="p1", name="app"), False)])
    # the daemon still up (its WAL not checkpointed): committed records are seen
    pods, ctrs = readonly.read(db_path)
    assert [p.name for p in pods] == ["web"] and [c.name for c in ctrs] == ["app"]
    s.close()
    db_file = tmp_path / "tether.db"
    before = (db_file.stat().st_mtime_ns, db_file.read_bytes())
    pods, ctrs = readonly.read(db_path)
    assert [p.id for p in pods] == ["p1"] and [c.sandbox_id for c in ctrs] == ["p1"]
    # the database is untouched (SQLite may leave its empty -wal/-shm side files, as any
    # reader of a WAL database does)
    assert (db_file.stat().st_mtime_ns, db_file.read_bytes()) == before
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(SchemaTooNew):
        readonly.read(db_path)
