"""`tether ns` against a real daemon, runc and real pods: the inodes it prints are the ones
`stat -L /proc/<pid>/ns/<kind>` shows, `tether ns check` fails on risky sharing only, it
falls back to the store when the daemon is down; and the cgroup namespace rule seen from
inside a container."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from podsandbox.cgroups import layout
from shim.cri import api_pb2 as pb
from shim.nsview.model import KINDS
from tests.integration.test_containers import Ctr, start_ctr
from tests.integration.test_sandbox import pod_config, stop_env
from tests.rig.images import ImageRegistry


@pytest.fixture(params=["runc"])
def ctr(request: pytest.FixtureRequest, tmp_path: Path,
        registry: ImageRegistry) -> Iterator[Ctr]:
    c = start_ctr(tmp_path, registry, request.param)
    env = c.env
    yield c
    if c.env.daemon.proc is None:  # a test left it down
        c.env.daemon.start()
        c.env.cri = c.env.daemon.client()
    stop_env(env)


def tether_ns(ctr: Ctr, *args: str) -> subprocess.CompletedProcess[str]:
    d = ctr.env.daemon
    return subprocess.run(
        [sys.executable, "-m", "shim.cli", "ns", *args, "--config", str(d.config_path),
         "--config-dir", str(d.base / "tether.d"), "--root", str(d.root),
         "--run-dir", str(d.run_dir)],
        capture_output=True, text=True, timeout=60)


def ns_json(ctr: Ctr, *args: str) -> dict[str, Any]:
    r = tether_ns(ctr, "--json", *args)
    assert r.returncode == 0, r.stderr
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


def stat_inode(pid: int | str, kind: str) -> int:
    out = subprocess.run(["stat", "-L", "-c", "%i", f"/proc/{pid}/ns/{kind}"],
                         capture_output=True, text=True, check=True).stdout
    return int(out)


def run_pod(ctr: Ctr, name: str, *, privileged: bool = False, **kw: Any) -> tuple[str, Any]:
    cfg = pod_config(name, **kw)
    cfg.linux.security_context.privileged = privileged
    cfg.log_directory = str(ctr.log_dir / name)
    sid = ctr.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg, runtime_handler=ctr.handler),
                               timeout=60).pod_sandbox_id
    return sid, cfg


def by_label(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for p in doc["pods"]:
        out[f"{p['namespace']}/{p['name']}"] = p
        for c in p["containers"]:
            out[f"{p['namespace']}/{p['name']}/{c['name']}"] = c
    return out


def test_inodes_owners_and_sharing_match_proc(ctr: Ctr) -> None:
    plain, pcfg = run_pod(ctr, "plain")
    own_id = ctr.run(plain, pcfg, "own", ["sleep", "600"])
    # a debug container in "own"'s PID namespace (namespace_options.pid TARGET)
    ctr.run(plain, pcfg, "debug", ["sleep", "600"], linux=pb.LinuxContainerConfig(
        security_context=pb.LinuxContainerSecurityContext(namespace_options=pb.NamespaceOption(
            network=pb.POD, ipc=pb.POD, pid=pb.TARGET, target_id=own_id))))
    shared, scfg = run_pod(ctr, "shared", pid=pb.POD)
    ctr.run(shared, scfg, "a", ["sleep", "600"])
    ctr.run(shared, scfg, "b", ["sleep", "600"])
    host, hcfg = run_pod(ctr, "hostnet", network=pb.NODE)
    ctr.run(host, hcfg, "h", ["sleep", "600"])

    doc = ns_json(ctr)
    assert doc["source"] == "cri"
    node = {k: stat_inode("self", k) for k in KINDS}
    assert doc["node"] == node
    subjects = by_label(doc)
    assert len(subjects) == 3 + 5
    for label, s in subjects.items():
        assert s["pid"] > 0, label
        for kind in KINDS:  # what lsns would print for that process
            assert s["namespaces"][kind]["inode"] == stat_inode(s["pid"], kind), (label, kind)
            assert s["namespaces"][kind]["seen"]

    def owner(label: str, kind: str) -> str:
        o: str = subjects[label]["namespaces"][kind]["owner"]
        return o

    # pause-holders: net/ipc/uts of the pod's own; PID the pod's only when it is shared
    assert [owner("default/plain", k) for k in ("net", "ipc", "uts", "pid")] == \
        ["pod", "pod", "pod", "node"]
    assert owner("default/shared", "pid") == "pod"
    assert [owner("default/hostnet", k) for k in ("net", "uts", "ipc")] == ["node", "node", "pod"]
    # a container with its own PID namespace; a pod-wide one shared by both containers
    own = subjects["default/plain/own"]["namespaces"]
    assert own["pid"]["owner"] == "container"
    assert own["pid"]["sharedWith"] == ["default/plain/debug"]
    debug = subjects["default/plain/debug"]["namespaces"]
    assert debug["pid"]["owner"] == "container" and debug["pid"]["inode"] == own["pid"]["inode"]
    assert own["net"]["owner"] == "pod"
    assert own["net"]["sharedWith"] == ["default/plain", "default/plain/debug"]
    a = subjects["default/shared/a"]["namespaces"]
    assert a["pid"]["owner"] == "pod"
    assert a["pid"]["sharedWith"] == ["default/shared", "default/shared/b"]
    assert subjects["default/hostnet/h"]["namespaces"]["net"]["owner"] == "node"
    assert subjects["default/hostnet/h"]["namespaces"]["net"]["inode"] == node["net"]
    # every container has its own mount namespace; user: the node's (no user namespaces yet)
    for label in ("default/plain/own", "default/shared/a", "default/shared/b",
                  "default/hostnet/h"):
        assert owner(label, "mnt") == "container"
        assert owner(label, "user") == "node"
    # two pods never share their own namespaces
    assert subjects["default/plain"]["namespaces"]["net"]["inode"] != \
        subjects["default/shared"]["namespaces"]["net"]["inode"]

    table = tether_ns(ctr)
    assert table.returncode == 0, table.stderr
    assert table.stdout.split()[:6] == ["POD", "CONTAINER", "PID", "NS", "INODE", "OWNER"]
    assert str(a["pid"]["inode"]) in table.stdout and "default/shared/b" in table.stdout


def test_a_pods_user_namespace_is_the_pods(ctr: Ctr) -> None:
    m = [pb.IDMapping(container_id=0, host_id=900000, length=65536)]
    sid, cfg = run_pod(ctr, "userns", privileged=True, pid=pb.POD)
    ns = cfg.linux.security_context.namespace_options
    ns.userns_options.CopyFrom(pb.UserNamespace(mode=pb.POD, uids=m, gids=m))
    ctr.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
    sid = ctr.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg, runtime_handler=ctr.handler),
                               timeout=60).pod_sandbox_id
    ctr.run(sid, cfg, "app", ["sleep", "600"])
    # privileged, but root only in the pod's own user namespace
    ctr.run(sid, cfg, "root", ["sleep", "600"], linux=pb.LinuxContainerConfig(
        security_context=pb.LinuxContainerSecurityContext(privileged=True)))
    subjects = by_label(ns_json(ctr))
    pod_user = subjects["default/userns"]["namespaces"]["user"]
    assert pod_user["owner"] == "pod"
    assert pod_user["inode"] == stat_inode(subjects["default/userns"]["pid"], "user")
    assert pod_user["inode"] != stat_inode("self", "user")
    for name in ("app", "root"):
        user = subjects[f"default/userns/{name}"]["namespaces"]["user"]
        assert (user["owner"], user["inode"]) == ("pod", pod_user["inode"])
    assert pod_user["sharedWith"] == ["default/userns/app", "default/userns/root"]
    # so a privileged container there is not root on the node: check has nothing to say
    r = tether_ns(ctr, "check")
    assert (r.returncode, r.stdout) == (0, "no risky namespace sharing found\n"), r.stderr
    # and the store knows it when the daemon is down
    ctr.env.cri.close()
    ctr.env.daemon.kill()
    r = tether_ns(ctr, "--json")
    assert r.returncode == 0, r.stderr
    down = by_label(json.loads(r.stdout))
    assert down["default/userns"]["namespaces"]["user"]["inode"] == pod_user["inode"]
    assert down["default/userns/root"]["namespaces"]["user"]["owner"] == "pod"


@pytest.mark.parametrize("ctr", ["runc", "crun"], indirect=True)
def test_cgroup_namespace_is_the_hosts_on_this_host_and_reported(ctr: Ctr) -> None:
    sid, cfg = run_pod(ctr, "cg")
    cid = ctr.run(sid, cfg, "c", ["sleep", "600"])
    inside = ctr.out(cid, "readlink", "/proc/self/ns/cgroup")
    host = os.stat("/proc/self/ns/cgroup").st_ino
    v2 = layout().mode == "v2"
    info = json.loads(ctr.status(cid, verbose=True).info["info"])
    if v2:
        assert inside != f"cgroup:[{host}]"
        assert info["cgroupNamespace"] == "private"
    else:  # v1 or hybrid: this machine
        assert inside == f"cgroup:[{host}]"
        assert info["cgroupNamespace"] == "host"
    assert info["privileged"] is False


def test_check_passes_a_plain_pod_and_fails_a_host_pid_privileged_one(ctr: Ctr) -> None:
    plain, pcfg = run_pod(ctr, "plain")
    ctr.run(plain, pcfg, "app", ["sleep", "600"])
    r = tether_ns(ctr, "check")
    assert (r.returncode, r.stdout) == (0, "no risky namespace sharing found\n"), r.stderr

    risky, rcfg = run_pod(ctr, "risky", pid=pb.NODE, privileged=True)
    ctr.run(risky, rcfg, "root", ["sleep", "600"],
            linux=pb.LinuxContainerConfig(
                security_context=pb.LinuxContainerSecurityContext(privileged=True)))
    r = tether_ns(ctr, "check")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "host-pid-privileged: container default/risky/root" in r.stdout
    j = tether_ns(ctr, "check", "--json")
    assert j.returncode == 1
    found = {(f["rule"], f["pod"], f["container"]) for f in json.loads(j.stdout)["findings"]}
    assert found == {("host-pid-privileged", "default/risky", "root"),
                     ("host-user-privileged", "default/risky", "root")}

    run_pod(ctr, "hostports", network=pb.NODE, ipc=pb.NODE,
            ports=[pb.PortMapping(container_port=8080, host_port=8080)])
    j = tether_ns(ctr, "check", "--json")
    assert j.returncode == 1
    found = {(f["rule"], f["pod"], f["container"]) for f in json.loads(j.stdout)["findings"]}
    assert {("host-network-hostport", "default/hostports", ""),
            ("host-ipc", "default/hostports", "")} < found
    assert len(found) == 4


def test_daemon_down_falls_back_to_the_store(ctr: Ctr) -> None:
    sid, cfg = run_pod(ctr, "keep", pid=pb.POD)
    ctr.run(sid, cfg, "app", ["sleep", "600"])
    up = ns_json(ctr)
    ctr.env.cri.close()
    ctr.env.daemon.kill()
    r = tether_ns(ctr, "--json")
    assert r.returncode == 0, r.stderr
    assert "reading the store" in r.stderr
    down = json.loads(r.stdout)
    assert down["source"] == "store"
    # the same pods, containers, pids and inodes as the daemon reported
    assert {k: v for k, v in down.items() if k != "source"} == \
        {k: v for k, v in up.items() if k != "source"}
    assert tether_ns(ctr, "check").returncode == 0
    forced = tether_ns(ctr, "--source", "cri")
    assert forced.returncode == 2 and "cannot read" in forced.stderr
    ctr.env.daemon.start()
    ctr.env.cri = ctr.env.daemon.client()
