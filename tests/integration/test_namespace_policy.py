"""The namespace-sharing policy against a real daemon: denials in enforce mode that leave
nothing behind, audit mode, a debug container's TARGET PID refused by a label rule, SIGHUP,
the audit lines (with the namespaces' inodes compared from the host) and the metrics."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from shim.cri import api_pb2 as pb
from tests.integration.test_sandbox import Env, pod_config, snapshot, start_env, stop_env
from tests.rig.daemon import TetherDaemon
from tests.rig.images import ImageRegistry

DENY_HOSTNET = """
[namespaces]
mode = "{mode}"
[[namespaces.rules]]
kind = "host_network"
verdict = "allow"
pod_namespaces = ["kube-system"]
[[namespaces.rules]]
kind = "host_network"
verdict = "deny"
name = "no-host-network"
"""


def _env(tmp_path: Path, policy: str, extra: str = "") -> Env:
    e = start_env(tmp_path, extra_config=extra + policy)
    e.conflist([e.bridge(), {"type": "loopback"}])
    return e


@pytest.fixture
def enforce_env(tmp_path: Path) -> Iterator[Env]:
    e = _env(tmp_path, DENY_HOSTNET.format(mode="enforce"))
    yield e
    stop_env(e)


def audit_path(d: TetherDaemon) -> Path:
    return d.root / "audit" / "namespaces.log"


def audit_lines(d: TetherDaemon, count: int, timeout: float = 10) -> list[dict[str, Any]]:
    """The audit log's lines once it has ``count`` (written by a thread: not at once)."""
    deadline = time.monotonic() + timeout
    lines: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        if audit_path(d).exists():
            lines = [json.loads(x) for x in audit_path(d).read_text().splitlines()]
            if len(lines) >= count:
                return lines
        time.sleep(0.05)
    raise AssertionError(f"{count} audit lines expected, have {lines}")


def metrics(d: TetherDaemon) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{d.metrics_port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def node_inode(kind: str) -> int:
    return os.stat(f"/proc/self/ns/{kind}").st_ino  # the test's netns is the daemon's


def denied(call: Any) -> str:
    with pytest.raises(grpc.RpcError) as e:
        call()
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED, (e.value.code(),
                                                                 e.value.details())
    return e.value.details() or ""


def test_host_network_pod_denied_naming_the_rule_leaves_nothing(enforce_env: Env) -> None:
    env = enforce_env
    plain = env.run("plain")  # no host namespace: no rule concerns it (bar host_user: allowed)
    before = snapshot(env)
    msg = denied(lambda: env.run("web", network=pb.NODE))
    assert "namespaces.rules[1] 'no-host-network' (kind host_network" in msg, msg
    assert "pod default/web" in msg
    assert [p.id for p in env.cri.runtime.ListPodSandbox(pb.ListPodSandboxRequest()).items] \
        == [plain]
    assert snapshot(env) == before  # no netns pin, mount, process, cgroup, lease, record
    lines = audit_lines(env.daemon, 2)
    assert [(x["kind"], x["verdict"], x["pod"]["name"]) for x in lines] == [
        ("host_user", "allow", "plain"), ("host_network", "deny", "web")]
    line = lines[1]
    assert line["granted"] is False and line["rpc"] == "RunPodSandbox"
    assert line["rule"] == {"index": 1, "name": "no-host-network", "kind": "host_network",
                            "verdict": "deny"}
    assert line["pod"] == {"name": "web", "namespace": "default", "uid": "uid-web", "id": None}
    assert line["namespaces"]["net"] == {"owner": "node", "inode": node_inode("net")}
    assert lines[0]["pod"]["id"] == plain
    text = metrics(env.daemon)
    assert 'tether_namespace_sharing_total{kind="host_network",verdict="deny"} 1.0' in text
    assert 'tether_namespace_sharing_total{kind="host_user",verdict="allow"} 1.0' in text
    assert ('tether_operations_errors_total{code="PERMISSION_DENIED",'
            'operation="RunPodSandbox"} 1.0') in text
    # the first matching rule wins: kube-system may
    cfg = pod_config("sys", network=pb.NODE)
    cfg.metadata.namespace = "kube-system"
    env.cri.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=60)


def test_audit_mode_allows_and_records_then_sighup_enforces(tmp_path: Path) -> None:
    env = _env(tmp_path, DENY_HOSTNET.format(mode="audit"))
    try:
        sid = env.run("web", network=pb.NODE, pid=pb.NODE)
        _, info = env.status(sid)
        lines = audit_lines(env.daemon, 3)
        by_kind = {x["kind"]: x for x in lines}
        assert set(by_kind) == {"host_network", "host_pid", "host_user"}
        net = by_kind["host_network"]
        assert (net["verdict"], net["granted"], net["mode"]) == ("audit", True, "audit")
        assert net["rule"]["index"] == 1  # the deny rule, only recorded
        assert net["pod"] == {"name": "web", "namespace": "default", "uid": "uid-web",
                              "id": sid}
        assert net["container"] is None and net["runtime_handler"] == "runc"
        # the inode in the line is the host's, and the pod's as the daemon reports it
        assert net["namespaces"]["net"]["inode"] == node_inode("net") == \
            info["namespaces"]["net"]["inode"]
        assert net["namespaces"]["uts"]["inode"] == node_inode("uts")
        assert by_kind["host_pid"]["namespaces"]["pid"]["inode"] == node_inode("pid")
        assert (by_kind["host_pid"]["verdict"], by_kind["host_pid"]["rule"]) == ("audit", None)
        assert by_kind["host_user"]["namespaces"]["user"]["inode"] == node_inode("user")
        assert 'tether_namespace_sharing_total{kind="host_network",verdict="audit"} 1.0' \
            in metrics(env.daemon)

        # SIGHUP: the same rules, enforced from the next RPC on
        env.daemon.config_path.write_text(
            env.daemon.config_text.replace('mode = "audit"', 'mode = "enforce"'))
        env.daemon.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while '"config reloaded"' not in env.daemon.logs() and time.monotonic() < deadline:
            time.sleep(0.05)
        reloaded = [json.loads(x) for x in env.daemon.logs().splitlines()
                    if '"config reloaded"' in x]
        assert reloaded and "namespaces.mode" in reloaded[-1]["applied"], env.daemon.logs()
        before = snapshot(env)
        msg = denied(lambda: env.run("web2", network=pb.NODE))
        assert "namespaces.rules[1]" in msg and "host_network" in msg
        assert snapshot(env) == before
        line = audit_lines(env.daemon, 4)[3]
        assert (line["kind"], line["verdict"], line["mode"]) == ("host_network", "deny",
                                                                 "enforce")
    finally:
        stop_env(env)


TARGET_RULE = """
[namespaces]
mode = "enforce"
[[namespaces.rules]]
kind = "target_pid"
verdict = "deny"
labels = { "debug.example/locked" = "true" }
[[namespaces.rules]]
kind = "privileged_host"
verdict = "deny"
runtime_handlers = ["runc"]
"""


def _container(pod: str, cfg: pb.PodSandboxConfig, image: str, name: str,
               **kw: Any) -> pb.CreateContainerRequest:
    return pb.CreateContainerRequest(pod_sandbox_id=pod, sandbox_config=cfg, config=pb.
                                     ContainerConfig(metadata=pb.ContainerMetadata(name=name),
                                                     image=pb.ImageSpec(image=image),
                                                     command=["sleep", "600"], **kw))


def _debug(target: str) -> pb.LinuxContainerConfig:
    return pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
        namespace_options=pb.NamespaceOption(pid=pb.TARGET, target_id=target)))


def test_debug_container_target_pid_denied_by_a_label_rule(
        tmp_path: Path, registry: ImageRegistry) -> None:
    """And a privileged container in a host-network pod refused by a handler rule."""
    env = _env(tmp_path, TARGET_RULE,
               extra=f'[images]\ninsecure_registries = ["{registry.host}"]\n')
    rt = env.cri.runtime
    try:
        image = registry.ref("busybox")
        env.cri.images.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=image)),
                                 timeout=120)

        def pod_with_app(name: str, labels: dict[str, str]) -> tuple[str, pb.PodSandboxConfig,
                                                                       str, int]:
            cfg = pod_config(name, labels=labels)
            sid = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=60).pod_sandbox_id
            app = rt.CreateContainer(_container(sid, cfg, image, "app"), timeout=60).container_id
            rt.StartContainer(pb.StartContainerRequest(container_id=app), timeout=60)
            info = json.loads(rt.ContainerStatus(pb.ContainerStatusRequest(
                container_id=app, verbose=True)).info["info"])
            return sid, cfg, app, os.stat(f"/proc/{info['pid']}/ns/pid").st_ino

        sid, cfg, app, app_pidns = pod_with_app("locked", {"debug.example/locked": "true"})
        dirs = [env.daemon.run_dir / "containers", env.daemon.root / "containers"]
        before = (snapshot(env), [sorted(os.listdir(d)) for d in dirs])
        msg = denied(lambda: rt.CreateContainer(_container(sid, cfg, image, "debugger",
                                                           linux=_debug(app)), timeout=60))
        assert "namespaces.rules[0] (kind target_pid, verdict deny)" in msg, msg
        assert "container 'debugger' of pod default/locked" in msg
        assert [c.id for c in rt.ListContainers(pb.ListContainersRequest()).containers] == [app]
        assert (snapshot(env), [sorted(os.listdir(d)) for d in dirs]) == before

        # the same debug container in a pod without the label: granted, and recorded
        sid2, cfg2, app2, app2_pidns = pod_with_app("open", {})
        dbg = rt.CreateContainer(_container(sid2, cfg2, image, "debugger", linux=_debug(app2)),
                                 timeout=60).container_id
        lines = [x for x in audit_lines(env.daemon, 4) if x["kind"] == "target_pid"]
        assert len(lines) == 2, lines
        deny, allow = lines
        assert (deny["verdict"], deny["granted"], deny["rpc"]) == ("deny", False,
                                                                  "CreateContainer")
        assert deny["container"] == {"name": "debugger", "id": None}
        assert deny["pod"]["id"] == sid
        assert deny["namespaces"]["pid"] == {"owner": "container", "inode": app_pidns,
                                             "container_id": app}
        assert (allow["verdict"], allow["rule"]) == ("allow", None)
        assert allow["container"] == {"name": "debugger", "id": dbg}
        assert allow["namespaces"]["pid"]["inode"] == app2_pidns
        text = metrics(env.daemon)
        assert 'tether_namespace_sharing_total{kind="target_pid",verdict="deny"} 1.0' in text
        assert 'tether_namespace_sharing_total{kind="target_pid",verdict="allow"} 1.0' in text

        # a privileged container in a host-network pod: the pod may, the container may not
        cfg3 = pod_config("hostnet", network=pb.NODE)
        cfg3.linux.security_context.privileged = True
        sid3 = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg3), timeout=60).pod_sandbox_id
        msg = denied(lambda: rt.CreateContainer(_container(
            sid3, cfg3, image, "root", linux=pb.LinuxContainerConfig(
                security_context=pb.LinuxContainerSecurityContext(privileged=True)))))
        assert "namespaces.rules[1] (kind privileged_host" in msg, msg
        rt.CreateContainer(_container(sid3, cfg3, image, "plain"), timeout=60)  # unprivileged
        # the refused container's lines: its denial only; the unprivileged one's host network
        tail = audit_lines(env.daemon, 8)[-2:]
        assert [(x["kind"], x["verdict"], x["container"]["name"]) for x in tail] == [
            ("privileged_host", "deny", "root"), ("host_network", "allow", "plain")]
        priv = [x for x in audit_lines(env.daemon, 8) if x["kind"] == "privileged_host"]
        assert [(x["verdict"], x["container"]["name"]) for x in priv] == [("deny", "root")]
        assert priv[0]["namespaces"] == {"net": {"owner": "node", "inode": node_inode("net")},
                                         "uts": {"owner": "node", "inode": node_inode("uts")}}
    finally:
        stop_env(env)


@pytest.mark.parametrize(("text", "key"), [
    ('[namespaces]\nmode = "on"\n', "namespaces.mode"),
    ('[[namespaces.rules]]\nkind = "host_pid"\nverdict = "refuse"\n',
     "namespaces.rules[0].verdict"),
])
def test_bad_policy_stops_the_daemon_with_exit_2(tmp_path: Path, text: str, key: str) -> None:
    d = TetherDaemon(tmp_path / "t", config_text=text)
    with pytest.raises(RuntimeError) as e:
        d.start()
    assert "exited with 2" in str(e.value)
    assert f"'{key}'" in d.logs() and str(d.config_path) in d.logs()
    assert not d.socket.exists()
