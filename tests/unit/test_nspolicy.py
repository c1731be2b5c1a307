"""The namespace-sharing policy without root: rule matching, verdicts per mode, the config's
validation (exit 2 naming the key), the CRI -> sharing conversion, the audit writer."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from podsandbox.types import Mode, NamespaceModes
from shim import cli
from shim import config as c
from shim.nspolicy import rules
from shim.nspolicy.audit import AuditLog, rotate
from shim.nspolicy.policy import NamespacePolicy
from shim.nspolicy.rules import NamespaceRef, Sharing, Subject
from shim.oci.types import ContainerSpec, PidMode, SecurityContext
from shim.rpc import namespace_policy as conv
from shim.store import SandboxRecord

POD = Subject(pod_name="web", pod_namespace="prod", pod_uid="u1", runtime_handler="runc",
              labels={"app": "web", "tier": "front"}, annotations={"debug": "yes"})
HOSTNET = Sharing("host_network", {"net": NamespaceRef("node", 7)})


def rule(**kw: object) -> c.NamespaceRule:
    return c.NamespaceRule(**kw)  # type: ignore[arg-type]


def cfg(mode: str, *rs: c.NamespaceRule) -> c.NamespacesConfig:
    return c.NamespacesConfig(mode=mode, rules=list(rs))


@pytest.mark.parametrize(("r", "hit"), [
    (rule(kind="host_network", verdict="deny"), True),
    (rule(kind="host_pid", verdict="deny"), False),
    (rule(kind="host_network", verdict="deny", pod_namespaces=["kube-*", "prod"]), True),
    (rule(kind="host_network", verdict="deny", pod_namespaces=["kube-*"]), False),
    (rule(kind="host_network", verdict="deny", labels={"app": "web"}), True),
    (rule(kind="host_network", verdict="deny", labels={"app": "w*", "tier": "front"}), True),
    (rule(kind="host_network", verdict="deny", labels={"app": "web", "x": "*"}), False),
    (rule(kind="host_network", verdict="deny", annotations={"debug": "yes"}), True),
    (rule(kind="host_network", verdict="deny", annotations={"debug": "no"}), False),
    (rule(kind="host_network", verdict="deny", runtime_handlers=["crun"]), False),
    (rule(kind="host_network", verdict="deny", runtime_handlers=["runc"],
          pod_namespaces=["prod"], labels={"app": "web"}), True),
])
def test_match_fields_are_anded(r: c.NamespaceRule, hit: bool) -> None:
    assert rules.matches(r, "host_network", POD) is hit


def test_first_matching_rule_wins_and_no_match_allows() -> None:
    allow = rule(kind="host_network", verdict="allow", labels={"app": "web"})
    deny = rule(kind="host_network", verdict="deny")
    (d,) = rules.decide(cfg("enforce", allow, deny), POD, [HOSTNET])
    assert (d.verdict, d.rule_index, d.granted) == ("allow", 0, True)
    (d,) = rules.decide(cfg("enforce", deny, allow), POD, [HOSTNET])
    assert (d.verdict, d.rule_index, d.granted) == ("deny", 0, False)
    (d,) = rules.decide(cfg("enforce", rule(kind="host_pid", verdict="deny")), POD, [HOSTNET])
    assert (d.verdict, d.rule, d.granted) == ("allow", None, True)


def test_modes() -> None:
    deny = rule(kind="host_network", verdict="deny", name="no-hostnet")
    assert rules.decide(cfg("off", deny), POD, [HOSTNET]) == []
    (d,) = rules.decide(cfg("audit", deny), POD, [HOSTNET])
    assert (d.verdict, d.granted, d.rule_index) == ("audit", True, 0)  # only recorded
    (d,) = rules.decide(cfg("audit"), POD, [HOSTNET])
    assert (d.verdict, d.rule) == ("audit", None)  # no match: audited in audit mode
    (d,) = rules.decide(cfg("audit", rule(kind="host_network", verdict="allow")), POD, [HOSTNET])
    assert d.verdict == "allow"
    (d,) = rules.decide(cfg("enforce", rule(kind="host_network", verdict="audit")), POD,
                        [HOSTNET])
    assert (d.verdict, d.granted) == ("audit", True)


def test_denial_message_names_rule_index_and_kind() -> None:
    deny = rule(kind="host_network", verdict="deny", name="no-hostnet")
    (d,) = rules.decide(cfg("enforce", rule(kind="host_pid", verdict="deny"), deny), POD,
                        [HOSTNET])
    msg = rules.denial_message(d, POD)
    assert "namespaces.rules[1]" in msg and "'no-hostnet'" in msg
    assert "kind host_network" in msg and "pod prod/web" in msg


def test_audit_record() -> None:
    deny = rule(kind="host_network", verdict="deny")
    (d,) = rules.decide(cfg("enforce", deny), POD, [HOSTNET])
    rec = rules.audit_record(d, POD, "RunPodSandbox", "T")
    assert rec == {
        "time": "T", "rpc": "RunPodSandbox", "mode": "enforce", "kind": "host_network",
        "verdict": "deny", "granted": False,
        "rule": {"index": 0, "name": "", "kind": "host_network", "verdict": "deny"},
        "pod": {"name": "web", "namespace": "prod", "uid": "u1", "id": None},
        "container": None, "runtime_handler": "runc",
        "namespaces": {"net": {"owner": "node", "inode": 7}},
    }
    json.dumps(rec)


def test_policy_refuses_and_records_only_the_denials(tmp_path: Path) -> None:
    ns = cfg("enforce", rule(kind="host_network", verdict="deny"))
    ns.audit_log = str(tmp_path / "a" / "ns.log")
    p = NamespacePolicy(ns)
    pid = Sharing("host_pid", {"pid": NamespaceRef("node", 8)})
    with pytest.raises(Exception) as e:
        p.check("RunPodSandbox", POD, [pid, HOSTNET])
    assert type(e.value).__name__ == "PermissionDenied"
    off = cfg("off")
    off.audit_log = str(tmp_path / "b" / "ns.log")
    p.reload(off)
    assert p.check("RunPodSandbox", POD, [HOSTNET]) == []
    p.close()
    lines = [json.loads(x) for x in (tmp_path / "a" / "ns.log").read_text().splitlines()]
    assert not (tmp_path / "b").exists()  # off: no line, no file
    assert [(x["kind"], x["verdict"]) for x in lines] == [("host_network", "deny")]
    assert (tmp_path / "a" / "ns.log").stat().st_mode & 0o777 == 0o600


# --- config ------------------------------------------------------------------------------

def _load(tmp_path: Path, text: str) -> c.Config:
    f = tmp_path / "t.toml"
    f.write_text(text)
    return c.load(c.ConfigSources(file=str(f), file_required=True,
                                  dropin_dir=str(tmp_path / "none")))


def test_config_rules_in_order_and_defaults(tmp_path: Path) -> None:
    got = _load(tmp_path, '[paths]\nroot = "/r"\n[namespaces]\nmode = "enforce"\n'
                '[[namespaces.rules]]\nkind = "host_pid"\nverdict = "deny"\n'
                'pod_namespaces = ["prod"]\nlabels = {app = "x"}\n'
                '[[namespaces.rules]]\nkind = "target_pid"\nverdict = "audit"\n')
    ns = got.namespaces
    assert ns.mode == "enforce" and ns.audit_log == "/r/audit/namespaces.log"
    assert [(r.kind, r.verdict) for r in ns.rules] == [("host_pid", "deny"),
                                                        ("target_pid", "audit")]
    assert ns.rules[0].labels == {"app": "x"} and ns.rules[0].pod_namespaces == ["prod"]
    assert c.load(c.ConfigSources(file=str(tmp_path / "no"))).namespaces.mode == "off"
    assert "[[namespaces.rules]]" in got.to_toml()


@pytest.mark.parametrize(("text", "key"), [
    ('mode = "strict"\n', "namespaces.mode"),
    ('[[namespaces.rules]]\nkind = "host_net"\nverdict = "deny"\n', "namespaces.rules[0].kind"),
    ('[[namespaces.rules]]\nkind = "host_pid"\nverdict = "deny"\n'
     '[[namespaces.rules]]\nkind = "host_pid"\n', "namespaces.rules[1].verdict"),
    ('[[namespaces.rules]]\nkind = "host_pid"\nverdict = "deny"\nlabel = {a = "b"}\n',
     "namespaces.rules[0].label"),
    ('[[namespaces.rules]]\nkind = "host_pid"\nverdict = "deny"\npod_namespaces = "x"\n',
     "namespaces.rules[0].pod_namespaces"),
    ('audit_log = "rel/ns.log"\n', "namespaces.audit_log"),
    ('audit_log_max_bytes = 10\n', "namespaces.audit_log_max_bytes"),
])
def test_bad_config_exits_2_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           text: str, key: str) -> None:
    f = tmp_path / "t.toml"
    f.write_text("[namespaces]\n" + text)
    for command in ("config", "serve"):
        rc = cli.main([command, "--config", str(f), "--config-dir", str(tmp_path / "none")])
        assert rc == 2
        err = capsys.readouterr().err
        assert f"'{key}'" in err and str(f) in err


def test_namespaces_keys_change_live() -> None:
    a, b = c.Config(), c.Config()
    b.namespaces.mode = "audit"
    b.namespaces.rules = [rule(kind="host_pid", verdict="deny")]
    assert set(c.diff(a, b)) == {"namespaces.mode", "namespaces.rules"} <= c.LIVE_KEYS


# --- CRI -> sharings ---------------------------------------------------------------------

def _inode(t: str) -> int:
    return {"net": 1, "uts": 2, "pid": 3, "ipc": 4, "user": 5}[t]


def test_pod_sharings() -> None:
    modes = NamespaceModes(network=Mode.NODE, pid=Mode.POD, ipc=Mode.NODE)
    got = {s.kind: s for s in conv.pod_sharings(modes, _inode)}
    assert set(got) == {"host_network", "host_ipc", "host_user", "pod_pid"}
    assert got["host_network"].namespaces == {"net": NamespaceRef("node", 1),
                                              "uts": NamespaceRef("node", 2)}
    assert got["pod_pid"].namespaces == {"pid": NamespaceRef("pod", None)}
    own_user = NamespaceModes(pid=Mode.CONTAINER, user=Mode.POD)
    assert [s.kind for s in conv.pod_sharings(own_user, _inode)] == []


def _pod() -> SandboxRecord:
    return SandboxRecord(id="p1", name="web", namespace="prod", uid="u1", runtime_handler="crun",
                         labels={"app": "web"})


def _modes(net: Mode = Mode.POD, pid: Mode = Mode.CONTAINER, ipc: Mode = Mode.POD
           ) -> NamespaceModes:
    return NamespaceModes(network=net, pid=pid, ipc=ipc)


def _ctr(pid: PidMode = PidMode.CONTAINER, target: str = "", privileged: bool = False
         ) -> ContainerSpec:
    return ContainerSpec(name="dbg", attempt=0, image="busybox", security=SecurityContext(
        privileged=privileged, pid=pid, target_id=target))


def test_container_sharings() -> None:
    assert conv.container_sharings(_modes(), _ctr(), _inode) == []
    (t,) = conv.container_sharings(_modes(), _ctr(PidMode.TARGET, "c1"), _inode, lambda _: 99)
    assert t == Sharing("target_pid", {"pid": NamespaceRef("container", 99, "c1")})
    kinds = [s.kind for s in conv.container_sharings(_modes(net=Mode.NODE), _ctr(PidMode.NODE),
                                                     _inode)]
    assert kinds == ["host_network", "host_pid"]
    got = conv.container_sharings(_modes(ipc=Mode.NODE), _ctr(privileged=True), _inode)
    assert [s.kind for s in got] == ["host_ipc", "privileged_host"]
    assert got[1].namespaces == {"ipc": NamespaceRef("node", 4)}
    # privileged in the pod's own namespaces: no host sharing at all
    assert conv.container_sharings(_modes(), _ctr(privileged=True), _inode) == []
    s = conv.container_subject(_pod(), _ctr())
    assert (s.pod_id, s.container_name, s.runtime_handler, s.labels) == \
        ("p1", "dbg", "crun", {"app": "web"})


# --- audit log ---------------------------------------------------------------------------

def test_rotate(tmp_path: Path) -> None:
    p = tmp_path / "ns.log"
    for i in range(4):
        p.write_text(f"gen{i}")
        rotate(str(p), 2)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["ns.log.1", "ns.log.2"]
    assert (tmp_path / "ns.log.1").read_text() == "gen3"
    assert (tmp_path / "ns.log.2").read_text() == "gen2"


def test_writer_rotates_by_size_and_keeps_n(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "ns.log"
    log = AuditLog(str(path), max_bytes=4096, keep=2)
    for i in range(300):  # ~40 bytes a line: ~12 KB, three files' worth and more
        log.write({"n": i, "pad": "x" * 20})
    log.close()
    names = sorted(x.name for x in path.parent.iterdir())
    assert names == ["ns.log", "ns.log.1", "ns.log.2"]
    for name in names:
        assert (path.parent / name).stat().st_size <= 4096
    last = [json.loads(x)["n"] for x in path.read_text().splitlines()]
    assert last[-1] == 299
    older = [json.loads(x)["n"] for x in (path.parent / "ns.log.1").read_text().splitlines()]
    assert older[-1] + 1 == last[0]  # nothing lost between the files


def test_writer_never_blocks_the_caller(tmp_path: Path) -> None:
    log = AuditLog(str(tmp_path / "ns.log"), max_bytes=1 << 20, keep=1)
    start = time.monotonic()
    for i in range(20000):  # more than the queue holds: the rest are dropped, not waited for
        log.write({"n": i})
    assert time.monotonic() - start < 5
    log.close()
    assert (tmp_path / "ns.log").read_text().count("\n") >= 1
