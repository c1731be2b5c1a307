"""A real kubelet drives a Tether of its own (etcd, kube-apiserver, kubelet in the test
network namespace; tests/rig/kube.py): everyday workloads, each checked by what a user sees
through kubectl. There is no scheduler or controller-manager: pods name the node.

The tools come from $KUBELET / $KUBE_APISERVER / $KUBECTL, ../shared/tools/bin or PATH, and
etcd from Debian's etcd-server; without them the stage says so in one line (a failure under
CI=true)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.rig.chart import RenderError, documents, kinds, render
from tests.rig.kube import NODE_IP, NODE_NAME, Kube, KubeError, require_kube_tools
from tests.rig.registry import RegistryServer

# TETHER_KUBE_RUNTIME=containerd runs the same cases against containerd 1.6 (a measurement
# for docs/kubelet.md, not part of the test command); cases about Tether itself skip there
RUNTIME = os.environ.get("TETHER_KUBE_RUNTIME", "tether")
BUSYBOX = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
NGINX = "registry.k8s.io/e2e-test-images/nginx:1.14-2"


@pytest.fixture(scope="module")
def kube(critest_registry: RegistryServer, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Kube]:
    k = Kube(tmp_path_factory.mktemp("kube"), critest_registry, require_kube_tools(),
             runtime=RUNTIME)
    try:
        k.up()
        yield k
        _report_removals(k)
    finally:
        k.down()


def _report_removals(k: Kube) -> None:
    """Per deleted pod, seconds until its sandbox left the runtime: printed, and kept in
    artifacts/kubelet/removal-<runtime>.json (docs/kubelet.md compares the runtimes)."""
    assert k.removals is not None
    time.sleep(1.5)
    times = k.removals.report()
    out = Path(__file__).resolve().parents[2] / "artifacts" / "kubelet"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"removal-{k.runtime}.json").write_text(json.dumps(times, indent=1) + "\n")
    print(f"\nsandbox removal after kubectl delete ({k.runtime}):",
          ", ".join(f"{n} {t if t is not None else 'still there'}" for n, t in times.items()))


# ------------------------------------------------------------------ helpers

def container(name: str, command: list[str] | None = None, image: str = BUSYBOX,
              **extra: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "image": image, "imagePullPolicy": "IfNotPresent"}
    if command is not None:
        c["command"] = command
    c.update(extra)
    return c


SLEEP = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]


def pod(name: str, *containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    labels = spec.pop("labels", {"e2e": "kubelet"})
    body: dict[str, Any] = {"nodeName": NODE_NAME, "terminationGracePeriodSeconds": 2,
                            "containers": list(containers) or [container("main", SLEEP)]}
    body.update(spec)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": body}


def wait_for(what: str, cond: Callable[[], Any], timeout: float = 60,
             every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")


def status(kube: Kube, name: str) -> dict[str, Any]:
    return dict(kube.get("pod", name)["status"])


def cstatus(kube: Kube, name: str, cname: str = "main", key: str = "containerStatuses"
            ) -> dict[str, Any]:
    for c in status(kube, name).get(key, []):
        if c["name"] == cname:
            return dict(c)
    return {}


def run_ready(kube: Kube, doc: dict[str, Any], timeout: float = 60) -> None:
    kube.apply(doc)
    name = doc["metadata"]["name"]
    try:
        kube.kubectl("wait", "--for=condition=Ready", f"pod/{name}", f"--timeout={timeout}s",
                     timeout=timeout + 10)
    except KubeError as e:
        raise AssertionError(f"{e}\n{json.dumps(status(kube, name), indent=1)}") from None


def delete(kube: Kube, *names: str, grace: int | None = None) -> None:
    assert kube.removals is not None
    kube.removals.mark_deleted(*names)
    args = ["delete", "pod", *names, "--timeout=90s", "--wait=true"]
    if grace is not None:
        args.append(f"--grace-period={grace}")
    kube.kubectl(*args, timeout=120)


def exec_(kube: Kube, name: str, *cmd: str, c: str = "main", stdin: str | None = None,
          check: bool = True) -> subprocess.CompletedProcess[str]:
    args = ["exec", *(["-i"] if stdin is not None else []), name, "-c", c, "--", *cmd]
    return kube.kubectl(*args, input=stdin, check=check)


# ------------------------------------------------------------------ cases

def test_node_ready_reports_tether(kube: Kube) -> None:
    node = kube.get("node", NODE_NAME)
    info = node["status"]["nodeInfo"]
    assert info["containerRuntimeVersion"].startswith(f"{RUNTIME}://"), info
    addrs = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addrs["InternalIP"] == NODE_IP


def test_logs_exec_exit_codes_stdin_tty(kube: Kube) -> None:
    run_ready(kube, pod("basic", container("main", ["sh", "-c",
                                                    "echo started; " + " ".join(SLEEP[2:])])))
    wait_for("log line", lambda: "started" in kube.kubectl("logs", "basic").stdout)
    assert exec_(kube, "basic", "sh", "-c", "echo out; echo err >&2").stdout == "out\n"
    res = exec_(kube, "basic", "sh", "-c", "exit 7", check=False)
    assert res.returncode == 7, res
    assert exec_(kube, "basic", "cat", stdin="through stdin\n").stdout == "through stdin\n"
    # a TTY: kubectl needs a terminal of its own for -t, so script(1) gives it one; its
    # stdin stays open, as a user's terminal does (at EOF script would end the session's
    # input while the command still runs)
    with subprocess.Popen(["script", "-qec", "stty rows 33 cols 101; "
                           f"{kube.tools['kubectl']} --kubeconfig "
                           f"{kube.admin_kubeconfig} exec -it basic -- sh -c 'tty; stty size'",
                           "/dev/null"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        rc = proc.wait(timeout=60)  # a few lines: no pipe fills up
        out, err = proc.stdout.read(), proc.stderr.read()
    assert rc == 0, (out, err)
    assert "/dev/pts/" in out and re.search(r"33 101\r?$", out, re.M), (out, err)
    missing = exec_(kube, "basic", "no-such-command", check=False)
    assert missing.returncode != 0 and "no-such-command" in missing.stderr + missing.stdout
    delete(kube, "basic")


def _read_until(proc: subprocess.Popen[bytes], needle: bytes, timeout: float = 30) -> bytes:
    """What ``proc`` printed on stdout up to ``needle`` (the process is left running)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    got = b""
    deadline = time.monotonic() + timeout
    while needle not in got:
        if time.monotonic() > deadline or proc.poll() is not None:
            raise AssertionError(f"no {needle!r} (rc {proc.poll()}): {got!r}")
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            time.sleep(0.05)
            continue
        got += chunk
    return got


def _popen(kube: Kube, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([kube.tools["kubectl"], "--kubeconfig", str(kube.admin_kubeconfig),
                             *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def _end(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait(10)


def test_attach_logs_follow_and_cp(kube: Kube) -> None:
    run_ready(kube, pod("attach", container(
        "main", ["sh", "-c", "i=0; while read l; do i=$((i+1)); echo got-$i-$l; done"],
        stdin=True)))
    att = _popen(kube, "attach", "-i", "attach", "-c", "main")
    try:
        assert att.stdin is not None
        for word in ("hello", "again"):
            att.stdin.write(f"{word}\n".encode())
            att.stdin.flush()
        _read_until(att, b"got-2-again")
    finally:
        _end(att)
    follow = _popen(kube, "logs", "-f", "attach")
    try:
        _read_until(follow, b"got-1-hello")
        # still following: new output arrives through the same stream
        res = kube.kubectl("attach", "-i", "attach", "-c", "main", input="third\n",
                           check=False, timeout=30)
        assert res.returncode == 0, res
        _read_until(follow, b"got-3-third")
    finally:
        _end(follow)
    # kubectl cp is tar over exec, both ways
    src = kube.base / "cp-src.txt"
    src.write_bytes(os.urandom(200_000).hex().encode())
    kube.kubectl("cp", str(src), "default/attach:/tmp/copied", "-c", "main")
    back = kube.base / "cp-back.txt"
    kube.kubectl("cp", "default/attach:/tmp/copied", str(back), "-c", "main")
    assert back.read_bytes() == src.read_bytes()
    delete(kube, "attach")


def _curl(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-fsS", "-m", "10", url], capture_output=True, text=True,
                          check=False)


def test_port_forward_and_host_port(kube: Kube) -> None:
    run_ready(kube, pod("pf", container("main", image=NGINX, readinessProbe={
        "httpGet": {"path": "/", "port": 80}, "periodSeconds": 1},
        ports=[{"containerPort": 80, "hostPort": 18080}])))
    # hostPort: the node's address forwards to the pod (the portmap plugin's DNAT)
    res = _curl(f"http://{NODE_IP}:18080/")
    assert "Welcome to nginx!" in res.stdout, res
    pf = _popen(kube, "port-forward", "pod/pf", ":80")
    try:
        line = _read_until(pf, b"-> 80").decode()
        port = re.search(r"127\.0\.0\.1:(\d+) -> 80", line)
        assert port, line
        for _ in range(3):  # one connection after another over the same forward
            res = _curl(f"http://127.0.0.1:{port[1]}/")
            assert "Welcome to nginx!" in res.stdout, res
    finally:
        _end(pf)
    delete(kube, "pf")
    # the mapping goes with the pod
    assert _curl(f"http://{NODE_IP}:18080/").returncode != 0


def test_restarts_back_off_and_previous_logs(kube: Kube) -> None:
    kube.apply(pod("crash", container("main", ["sh", "-c", "echo run-prev; sleep 1; exit 3"]),
                   restartPolicy="Always"))
    seen_backoff = False

    def restarted() -> bool:
        nonlocal seen_backoff
        st = cstatus(kube, "crash")
        seen_backoff |= st.get("state", {}).get("waiting", {}).get("reason") == \
            "CrashLoopBackOff"
        return st.get("restartCount", 0) >= 1 and seen_backoff

    wait_for("a restart and CrashLoopBackOff", restarted, timeout=90)
    last = cstatus(kube, "crash")["lastState"]["terminated"]
    assert last["exitCode"] == 3 and last["reason"] == "Error", last
    prev = kube.kubectl("logs", "--previous", "crash").stdout
    assert prev == "run-prev\n", prev
    delete(kube, "crash")


def test_probes_of_every_kind(kube: Kube) -> None:
    probe = {"periodSeconds": 1, "failureThreshold": 1}
    kube.apply(pod(
        "probes",
        container("web", image=NGINX,
                  startupProbe={"tcpSocket": {"port": 80}, **probe, "failureThreshold": 30},
                  readinessProbe={"httpGet": {"path": "/", "port": 80}, **probe},
                  livenessProbe={"exec": {"command": ["true"]}, **probe}),
        container("unready", SLEEP, readinessProbe={"exec": {"command": ["false"]}, **probe}),
        container("dies", ["sh", "-c", "touch /tmp/ok; sleep 2; rm /tmp/ok; sleep 3600"],
                  livenessProbe={"exec": {"command": ["cat", "/tmp/ok"]}, **probe})))

    def settled() -> bool:
        st = {c["name"]: c for c in status(kube, "probes").get("containerStatuses", [])}
        return (st.get("web", {}).get("ready") is True and st["web"].get("started") is True
                and st.get("dies", {}).get("restartCount", 0) >= 1)

    wait_for("web ready, dies restarted by its liveness probe", settled, timeout=90)
    st = {c["name"]: c for c in status(kube, "probes")["containerStatuses"]}
    assert st["unready"]["ready"] is False and st["web"]["restartCount"] == 0
    conds = {c["type"]: c["status"] for c in status(kube, "probes")["conditions"]}
    assert conds["Ready"] == "False" and conds["ContainersReady"] == "False"
    delete(kube, "probes")


def test_init_containers_emptydir_configmap_secret(kube: Kube) -> None:
    kube.kubectl("create", "configmap", "e2e-cm", "--from-literal=greeting=hello-cm")
    kube.kubectl("create", "secret", "generic", "e2e-secret", "--from-literal=token=s3cret")
    run_ready(kube, pod(
        "vols",
        container("main", SLEEP, volumeMounts=[
            {"name": "work", "mountPath": "/work"}, {"name": "cm", "mountPath": "/cm"},
            {"name": "sec", "mountPath": "/sec"}]),
        initContainers=[container("init", ["sh", "-c", "echo from-init > /work/seed"],
                                  volumeMounts=[{"name": "work", "mountPath": "/work"}])],
        volumes=[{"name": "work", "emptyDir": {}},
                 {"name": "cm", "configMap": {"name": "e2e-cm"}},
                 {"name": "sec", "secret": {"secretName": "e2e-secret"}}]))
    init = cstatus(kube, "vols", "init", key="initContainerStatuses")
    assert init["state"]["terminated"]["reason"] == "Completed", init
    out = exec_(kube, "vols", "sh", "-c", "cat /work/seed /cm/greeting; echo; cat /sec/token")
    assert out.stdout == "from-init\nhello-cm\ns3cret", out
    delete(kube, "vols")
    kube.kubectl("delete", "configmap", "e2e-cm")
    kube.kubectl("delete", "secret", "e2e-secret")


def test_share_process_namespace_and_host_network(kube: Kube) -> None:
    run_ready(kube, pod("shared", container("main", SLEEP),
                        container("other", ["sh", "-c", "exec sleep 3601"]),
                        shareProcessNamespace=True))
    ps = exec_(kube, "shared", "ps", "-o", "pid,args").stdout
    assert "sleep 3601" in ps, ps
    assert re.search(r"^\s*1\s+\S*(catatonit|pause)", ps, re.M), ps
    run_ready(kube, pod("hostnet", container("main", SLEEP), hostNetwork=True))
    addrs = exec_(kube, "hostnet", "ip", "-o", "addr").stdout
    assert f"inet {NODE_IP}/32" in addrs, addrs
    assert exec_(kube, "hostnet", "hostname").stdout.strip() == os.uname().nodename
    assert status(kube, "hostnet")["podIP"] == NODE_IP
    delete(kube, "shared", "hostnet")


def test_oom_killed_and_termination_messages(kube: Kube) -> None:
    never = {"restartPolicy": "Never"}
    kube.apply(pod("oom", container("main", ["tail", "/dev/zero"], resources={
        "limits": {"memory": "32Mi"}}), **never))
    kube.apply(pod("msg", container("main", ["sh", "-c", "printf done > /dev/termination-log"]),
                   **never))
    kube.apply(pod("fallback", container(
        "main", ["sh", "-c", "echo last words; exit 1"],
        terminationMessagePolicy="FallbackToLogsOnError"), **never))

    def terminated(name: str) -> Any:
        return cstatus(kube, name).get("state", {}).get("terminated")

    oom = wait_for("oom terminated", lambda: terminated("oom"))
    assert oom["reason"] == "OOMKilled" and oom["exitCode"] == 137, oom
    msg = wait_for("msg terminated", lambda: terminated("msg"))
    assert msg["reason"] == "Completed" and msg["exitCode"] == 0 and msg["message"] == "done"
    fb = wait_for("fallback terminated", lambda: terminated("fallback"))
    assert fb["reason"] == "Error" and fb["exitCode"] == 1 and fb["message"] == "last words\n"
    assert status(kube, "msg")["phase"] == "Succeeded"
    assert status(kube, "fallback")["phase"] == "Failed"
    delete(kube, "oom", "msg", "fallback")


def test_security_context(kube: Kube) -> None:
    run_ready(kube, pod(
        "secctx",
        container("user", SLEEP, securityContext={"runAsUser": 1000, "runAsGroup": 2000}),
        container("caps", SLEEP, securityContext={
            "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}),
        container("ro", SLEEP, securityContext={"readOnlyRootFilesystem": True}),
        container("seccomp", SLEEP, securityContext={
            "seccompProfile": {"type": "RuntimeDefault"}}),
        securityContext={"supplementalGroups": [3000]}))
    ids = exec_(kube, "secctx", "id", c="user").stdout
    assert ids.startswith("uid=1000 gid=2000") and "3000" in ids, ids
    caps = exec_(kube, "secctx", "grep", "CapEff", "/proc/self/status", c="caps").stdout
    assert caps.split() == ["CapEff:", "0000000000000400"], caps
    ro = exec_(kube, "secctx", "touch", "/x", c="ro", check=False)
    assert ro.returncode != 0 and "Read-only file system" in ro.stderr, ro
    sc = exec_(kube, "secctx", "grep", "^Seccomp:", "/proc/self/status", c="seccomp").stdout
    assert sc.split() == ["Seccomp:", "2"], sc
    delete(kube, "secctx")


def _cgroup_limit(kube: Kube, path: str) -> int:
    return int((Path("/sys/fs/cgroup/memory") / kube.cgroup_root.lstrip("/") / path /
                "memory.limit_in_bytes").read_text())


def test_qos_cgroups(kube: Kube) -> None:
    res = {"cpu": "100m", "memory": "64Mi"}
    run_ready(kube, pod("guaranteed", container("main", SLEEP,
                                                resources={"limits": res, "requests": res})))
    run_ready(kube, pod("burstable", container("main", SLEEP, resources={
        "requests": {"memory": "16Mi"}, "limits": {"memory": "48Mi"}})))
    g, b = status(kube, "guaranteed"), status(kube, "burstable")
    assert (g["qosClass"], b["qosClass"]) == ("Guaranteed", "Burstable")
    guid = kube.get("pod", "guaranteed")["metadata"]["uid"]
    buid = kube.get("pod", "burstable")["metadata"]["uid"]
    assert _cgroup_limit(kube, f"kubepods/pod{guid}") == 64 << 20
    assert _cgroup_limit(kube, f"kubepods/burstable/pod{buid}") == 48 << 20
    inside = exec_(kube, "guaranteed", "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
    assert int(inside.stdout) == 64 << 20
    shares = exec_(kube, "guaranteed", "cat", "/sys/fs/cgroup/cpu/cpu.shares").stdout
    assert int(shares) == 102  # 100m
    delete(kube, "guaranteed", "burstable")


def test_image_pull_policies_and_errors(kube: Kube) -> None:
    run_ready(kube, pod("always", container("main", SLEEP, imagePullPolicy="Always")))
    kube.apply(pod("never", container("main", SLEEP, image="registry.k8s.io/e2e/absent:1",
                                      imagePullPolicy="Never")))
    kube.apply(pod("nosuch", container("main", SLEEP, image="registry.k8s.io/e2e/absent:1")))

    def waiting(name: str) -> str:
        return str(cstatus(kube, name).get("state", {}).get("waiting", {}).get("reason", ""))

    wait_for("ErrImageNeverPull", lambda: waiting("never") == "ErrImageNeverPull")
    wait_for("pull error", lambda: waiting("nosuch") in ("ErrImagePull", "ImagePullBackOff"))
    # what the user reads in `kubectl describe`: the image named, the reason given
    message = cstatus(kube, "nosuch")["state"]["waiting"].get("message", "")
    assert "registry.k8s.io/e2e/absent:1" in message, message
    delete(kube, "always", "never", "nosuch")


def test_dns_config_host_aliases_sysctls(kube: Kube) -> None:
    run_ready(kube, pod(
        "dns", container("main", SLEEP), dnsPolicy="None",
        dnsConfig={"nameservers": ["10.203.0.53"], "searches": ["e2e.example"],
                   "options": [{"name": "ndots", "value": "2"}]},
        hostAliases=[{"ip": "10.1.2.3", "hostnames": ["alias.e2e"]}],
        securityContext={"sysctls": [{"name": "kernel.shm_rmid_forced", "value": "1"},
                                     {"name": "net.ipv4.route.min_pmtu", "value": "600"}]}))
    resolv = exec_(kube, "dns", "cat", "/etc/resolv.conf").stdout
    assert "nameserver 10.203.0.53" in resolv and "search e2e.example" in resolv
    assert "options ndots:2" in resolv, resolv
    hosts = exec_(kube, "dns", "cat", "/etc/hosts").stdout
    assert re.search(r"^10\.1\.2\.3\s+alias\.e2e$", hosts, re.M), hosts
    assert exec_(kube, "dns", "hostname").stdout.strip() == "dns"
    sysctl = exec_(kube, "dns", "cat", "/proc/sys/kernel/shm_rmid_forced",
                   "/proc/sys/net/ipv4/route/min_pmtu").stdout.split()
    assert sysctl == ["1", "600"]
    delete(kube, "dns")


def test_graceful_deletion_with_pre_stop(kube: Kube) -> None:
    logdir = kube.base / "grace"
    logdir.mkdir()
    run_ready(kube, pod(
        "grace",
        container("main", ["sh", "-c", "trap 'echo term >> /h/log; exit 0' TERM; "
                                       "echo start >> /h/log; sleep 3600 & wait"],
                  volumeMounts=[{"name": "h", "mountPath": "/h"}],
                  lifecycle={"preStop": {"exec": {"command": [
                      "sh", "-c", "echo prestop >> /h/log; sleep 1"]}}}),
        container("stubborn", ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]),
        volumes=[{"name": "h", "hostPath": {"path": str(logdir)}}],
        terminationGracePeriodSeconds=4))
    t0 = time.monotonic()
    delete(kube, "grace")
    took = time.monotonic() - t0
    assert (logdir / "log").read_text() == "start\nprestop\nterm\n"
    # the stubborn container is killed when the grace period ends, not before
    assert 3.5 <= took < 30, took


def test_ephemeral_debug_container_with_target(kube: Kube) -> None:
    run_ready(kube, pod("debugme", container("main", ["sh", "-c", "exec sleep 3602"])))
    kube.kubectl("debug", "debugme", f"--image={BUSYBOX}", "--target=main", "--container=dbg",
                 "--", "sh", "-c", "ps -o args; sleep 3600")

    def dbg_running() -> bool:
        for c in status(kube, "debugme").get("ephemeralContainerStatuses", []):
            if c["name"] == "dbg" and "running" in c["state"]:
                return True
        return False

    wait_for("debug container running", dbg_running)
    logs = wait_for("debug output", lambda: kube.kubectl("logs", "debugme", "-c", "dbg",
                                                         check=False).stdout)
    assert "sleep 3602" in logs, logs  # the target's processes are visible
    delete(kube, "debugme")


def test_static_pod_and_stats_summary(kube: Kube) -> None:
    doc = pod("static", container("main", SLEEP))
    del doc["spec"]["nodeName"]
    (kube.manifests / "static.json").write_text(json.dumps(doc))
    mirror = f"static-{NODE_NAME}"
    wait_for("mirror pod Running", lambda: kube.kubectl(
        "get", "pod", mirror, "-o", "jsonpath={.status.phase}", check=False).stdout == "Running")
    summary = json.loads(kube.kubectl("get", "--raw",
                                      f"/api/v1/nodes/{NODE_NAME}/proxy/stats/summary").stdout)
    pods = {p["podRef"]["name"]: p for p in summary["pods"]}
    assert mirror in pods, list(pods)
    assert summary["node"]["nodeName"] == NODE_NAME
    assert kube.removals is not None
    kube.removals.mark_deleted(mirror)
    (kube.manifests / "static.json").unlink()
    wait_for("mirror pod gone", lambda: kube.kubectl("get", "pod", mirror, check=False)
             .returncode != 0)


def test_chart_renders_and_the_apiserver_accepts_it(kube: Kube, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(
        "config:\n"
        "  images:\n"
        "    mirrors: {docker.io: [\"https://mirror.example\"]}\n"
        "  streaming: {max_sessions: 7}\n"
        "dropIns:\n"
        "  50-log.toml: |\n"
        "    [logging]\n"
        "    level = \"debug\"\n")
    out = render("--name", "tether", "--namespace", "kube-system", "-f", str(values),
                 "--set", "installer.installPackages=false")
    assert sorted(kinds(out)) == ["ConfigMap", "DaemonSet", "RuntimeClass", "RuntimeClass"]
    (tmp_path / "rendered.yaml").write_text(out)
    # what the apiserver makes of every object, defaults and validation included
    res = kube.kubectl("apply", "--dry-run=server", "-o", "json", "-f",
                       str(tmp_path / "rendered.yaml"))
    objs = {o["kind"] + "/" + o["metadata"]["name"]: o for o in json.loads(res.stdout)["items"]}
    assert set(objs) == {"ConfigMap/tether", "DaemonSet/tether", "RuntimeClass/runc",
                         "RuntimeClass/crun"}, set(objs)
    assert objs["RuntimeClass/crun"]["handler"] == "crun"
    spec = objs["DaemonSet/tether"]["spec"]["template"]["spec"]
    assert spec["hostPID"] and spec["hostNetwork"] and spec["priorityClassName"] == \
        "system-node-critical"
    assert spec["containers"][0]["securityContext"]["privileged"] is True
    assert {"name": "INSTALL_PACKAGES", "value": "false"} in spec["containers"][0]["env"]
    annotations = objs["DaemonSet/tether"]["spec"]["template"]["metadata"]["annotations"]
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/config"])
    assert annotations["prometheus.io/port"] == "9090"
    # the ConfigMap's tether.toml and drop-in are what Tether itself accepts
    data = objs["ConfigMap/tether"]["data"]
    (tmp_path / "tether.toml").write_text(data["tether.toml"])
    (tmp_path / "tether.d").mkdir()
    (tmp_path / "tether.d" / "50-log.toml").write_text(data["dropin-50-log.toml"])
    cfg = subprocess.run([str(Path(sys.executable).with_name("tether")), "config", "--config",
                          str(tmp_path / "tether.toml"), "--config-dir",
                          str(tmp_path / "tether.d")],
                         capture_output=True, text=True, check=True).stdout
    parsed = tomllib.loads(cfg)
    assert parsed["images"]["mirrors"] == {"docker.io": ["https://mirror.example"]}
    assert parsed["streaming"]["max_sessions"] == 7 and parsed["logging"]["level"] == "debug"
    assert set(parsed["runtime"]["handlers"]) == {"runc", "crun"}
    assert "#!/bin/sh" in data["install.sh"]
    # the prometheus-operator objects when asked for (their CRDs are not in this cluster)
    mon = render("--set", "metrics.podMonitor.enabled=true",
                 "--set", "metrics.serviceMonitor.enabled=true")
    assert {"PodMonitor", "ServiceMonitor", "Service"} <= set(kinds(mon))
    with pytest.raises(RenderError, match=r"must be a file name ending in \.toml"):
        render("--set", "dropIns.bad/name=x")


def test_runtime_class_from_the_chart_runs_pods_under_crun(kube: Kube, tmp_path: Path
                                                           ) -> None:
    if kube.node is None:
        pytest.skip("the handlers are Tether's")
    classes = documents(render())["runtimeclass.yaml"]
    (tmp_path / "rc.yaml").write_text("---\n".join(classes))
    kube.kubectl("apply", "-f", str(tmp_path / "rc.yaml"))
    try:
        for handler in ("crun", "runc"):
            name = f"rc-{handler}"
            run_ready(kube, pod(name, container("main", SLEEP), runtimeClassName=handler))
            cid = cstatus(kube, name)["containerID"].split("//", 1)[1]
            info = json.loads(kube.crictl("inspect", cid).stdout)["info"]
            assert info["runtimeHandler"] == handler
            # the OCI runtime conmon runs is the handler's binary
            ppid = re.search(r"(?m)^PPid:\s+(\d+)", Path(f"/proc/{info['pid']}/status")
                             .read_text())
            assert ppid is not None
            argv = Path(f"/proc/{ppid.group(1)}/cmdline").read_bytes().split(b"\0")
            assert Path(argv[0].decode()).name == "conmon"
            runtime = argv[argv.index(b"--runtime") + 1] if b"--runtime" in argv else \
                argv[argv.index(b"-r") + 1]
            assert Path(runtime.decode()).name == handler, argv
            sandbox = json.loads(kube.crictl("inspectp", info["sandboxID"]).stdout)
            assert sandbox["status"]["runtimeHandler"] == handler
            delete(kube, name)
    finally:
        kube.kubectl("delete", "-f", str(tmp_path / "rc.yaml"), "--ignore-not-found")


@pytest.mark.skipif(RUNTIME != "tether", reason="Tether's own annotation")
def test_user_namespaced_pod_by_annotation(kube: Kube) -> None:
    """This kubelet (1.24) predates hostUsers: the pod asks Tether by annotation. What a
    user does with a pod works the same, as root in a namespace of the pod's own."""
    kube.kubectl("create", "configmap", "e2e-userns", "--from-literal=greeting=hello-userns")
    main = ["sh", "-c", "echo hello from $(id -u):$(id -g); trap 'exit 0' TERM; "
            "sleep 3600 & wait"]
    doc = pod("userns", container("main", main, volumeMounts=[
        {"name": "work", "mountPath": "/work"}, {"name": "cm", "mountPath": "/cm"}]),
        container("web", image=NGINX, readinessProbe={
            "httpGet": {"path": "/", "port": 80}, "periodSeconds": 1}),
        shareProcessNamespace=True,
        volumes=[{"name": "work", "emptyDir": {}},
                 {"name": "cm", "configMap": {"name": "e2e-userns"}}])
    doc["metadata"]["annotations"] = {"io.tether.userns-mode": "auto"}
    run_ready(kube, doc, timeout=90)
    uid_map = exec_(kube, "userns", "cat", "/proc/self/uid_map").stdout.split()
    assert uid_map[0] == "0" and int(uid_map[1]) >= 2**31 and uid_map[2] == "65536", uid_map
    # root in the pod, over the image's files, the kubelet's emptyDir and ConfigMap
    out = exec_(kube, "userns", "sh", "-c", "id -u; stat -c %u /bin/busybox; "
                "echo written > /work/f && cat /work/f; cat /cm/greeting").stdout
    assert out.split() == ["0", "0", "written", "hello-userns"], out
    assert exec_(kube, "userns", "cat", stdin="via stdin\n").stdout == "via stdin\n"
    # one PID namespace for the pod (catatonit its PID 1), every process root in it; the
    # stand-in nginx (critest's image) serves its page
    ps = exec_(kube, "userns", "ps", "-o", "pid,user,args").stdout
    assert re.search(r"^\s*1\s+root\s+\S*catatonit", ps, re.M), ps
    assert re.search(r"^\s*\d+\s+root\s+nginx: master process", ps, re.M), ps
    page = exec_(kube, "userns", "wget", "-q", "-O", "-", "http://127.0.0.1/").stdout
    assert "Welcome to nginx!" in page
    # the kubelet's HTTP probe reached it (Ready above); kubectl port-forward does too
    pf = _popen(kube, "port-forward", "pod/userns", ":80")
    try:
        line = _read_until(pf, b"-> 80").decode()
        port = re.search(r"127\.0\.0\.1:(\d+) -> 80", line)
        assert port, line
        assert "Welcome to nginx!" in _curl(f"http://127.0.0.1:{port[1]}/").stdout
    finally:
        _end(pf)
    # from the node: the pod's processes run as the pod's ids, not as root
    cid = cstatus(kube, "userns")["containerID"].split("//", 1)[1]
    info = json.loads(kube.crictl("inspect", cid).stdout)["info"]
    uid_line = next(line for line in Path(f"/proc/{info['pid']}/status").read_text()
                    .splitlines() if line.startswith("Uid:"))
    assert int(uid_line.split()[1]) == int(uid_map[1]), uid_line
    assert kube.kubectl("logs", "userns", "-c", "main").stdout == "hello from 0:0\n"
    delete(kube, "userns")
    kube.kubectl("delete", "configmap", "e2e-userns")


def test_kubelet_restart_and_tether_restart_keep_pods(kube: Kube) -> None:
    run_ready(kube, pod("survivor", container("main", SLEEP)))
    before = cstatus(kube, "survivor")["containerID"]
    kube.stop_kubelet()
    kube.start_kubelet()
    # a restarted kubelet first relists its pods; exec works once it has
    wait_for("exec after the kubelet's restart", lambda: exec_(
        kube, "survivor", "echo", "after-kubelet", check=False).stdout == "after-kubelet\n")
    if kube.node is not None:
        kube.node.daemon.stop()
        kube.node.daemon.start()
        wait_for("exec after Tether's restart", lambda: exec_(
            kube, "survivor", "echo", "after-tether", check=False).stdout == "after-tether\n")
    st = cstatus(kube, "survivor")
    assert st["containerID"] == before and st["restartCount"] == 0, st
    run_ready(kube, pod("newcomer", container("main", SLEEP)))
    delete(kube, "survivor", "newcomer")


def test_thirty_pods_at_once_then_a_clean_runtime(kube: Kube) -> None:
    # whatever earlier cases left behind goes first, so that the runtime ends up empty
    kube.kubectl("delete", "pod", "--all", "--wait=true", "--timeout=120s", timeout=150)
    names = [f"many-{i:02d}" for i in range(30)]
    items = [pod(n, container("main", SLEEP), labels={"many": "yes"}) for n in names]
    kube.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                       "items": items}))
    kube.kubectl("wait", "--for=condition=Ready", "pod", "-l", "many=yes",
                 "--timeout=180s", timeout=200)
    t0 = time.monotonic()
    assert kube.removals is not None
    kube.removals.mark_deleted(*names)
    kube.kubectl("delete", "pod", "-l", "many=yes", "--wait=true", "--timeout=120s",
                 timeout=150)
    gone_api = time.monotonic() - t0
    wait_for("every sandbox removed", lambda: not kube.crictl("pods", "-q").stdout.strip(),
             timeout=180, every=1)
    gone_runtime = time.monotonic() - t0
    print(f"30 pods: gone from the API after {gone_api:.1f} s, "
          f"from the runtime after {gone_runtime:.1f} s")
    assert not kube.crictl("ps", "-a", "-q").stdout.strip()
    # nothing of the pods left: no pod cgroups, no mounts under the node's root
    kubepods = Path("/sys/fs/cgroup/memory") / kube.cgroup_root.lstrip("/") / "kubepods"
    wait_for("pod cgroups removed", lambda: not list(kubepods.rglob("pod*")), timeout=60)
    if kube.node is not None:
        root = str(kube.node.daemon.root)
        mounts = [m for m in Path("/proc/self/mounts").read_text().splitlines()
                  if f" {root}/" in m]
        assert mounts == [], mounts
