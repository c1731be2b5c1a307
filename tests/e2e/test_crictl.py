"""crictl, the CRI client node operators debug with, against a Tether daemon of its own: every
everyday command, checked by what it prints. Images are critest's stand-ins, pulled by their
public names through the daemon's mirrors. crictl comes from $CRICTL, PATH or
../shared/tools/bin; without it these tests say so in one line (and fail under CI=true)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.rig.critest import require_tool
from tests.rig.node import Node, start_node
from tests.rig.registry import RegistryServer

BUSYBOX = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
TEST_IMAGE = "gcr.io/k8s-staging-cri-tools/test-image-latest:latest"
TAGGED = "gcr.io/k8s-staging-cri-tools/test-image-tags:1"


@dataclass
class Crictl:
    binary: str
    node: Node
    config: Path
    work: Path

    def argv(self, *args: str) -> list[str]:
        return [self.binary, "--config", str(self.config), "-r", self.node.endpoint,
                "-i", self.node.endpoint, "--timeout", "30s", *args]

    def run(self, *args: str, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = self.argv(*args)
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {res.returncode}:\n{res.stdout}\n"
                                 f"{res.stderr}")
        return res

    def out(self, *args: str) -> str:
        return self.run(*args).stdout

    def json(self, command: str, *args: str) -> Any:
        # options before the positional arguments, as crictl's parser wants them
        return json.loads(self.out(command, "-o", "json", *args))

    def write(self, name: str, doc: dict[str, Any]) -> str:
        path = self.work / name
        path.write_text(json.dumps(doc))
        return str(path)

    def pod_config(self, name: str, **extra: Any) -> str:
        doc = {"metadata": {"name": name, "namespace": "e2e", "uid": f"uid-{name}",
                            "attempt": 0},
               "log_directory": str(self.work / "logs" / name), "linux": {}}
        doc.update(extra)
        return self.write(f"pod-{name}.json", doc)

    def ctr_config(self, name: str, command: list[str], attempt: int = 0,
                   image: str = BUSYBOX, **extra: Any) -> str:
        doc = {"metadata": {"name": name, "attempt": attempt}, "image": {"image": image},
               "command": command, "log_path": f"{name}/{attempt}.log", "linux": {}}
        doc.update(extra)
        return self.write(f"ctr-{name}-{attempt}.json", doc)


@pytest.fixture(scope="module")
def crictl(critest_registry: RegistryServer, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Crictl]:
    binary = require_tool("crictl")
    base = tmp_path_factory.mktemp("crictl")
    node = start_node(base, critest_registry, bridge="e2ecrictl0", subnet="10.91.0.0/24")
    work = base / "work"
    work.mkdir()
    c = Crictl(binary, node, base / "crictl.yaml", work)
    c.config.write_text("")
    try:
        c.run("pull", BUSYBOX, timeout=120)
        yield c
    finally:
        node.stop()


def test_version_info_runtime_config_and_config(crictl: Crictl) -> None:
    out = crictl.out("version")
    assert re.search(r"^RuntimeName:\s+tether$", out, re.M), out
    assert re.search(r"^RuntimeApiVersion:\s+v1$", out, re.M), out
    info = crictl.json("info")
    conds = {c["type"]: c["status"] for c in info["status"]["conditions"]}
    assert conds == {"RuntimeReady": True, "NetworkReady": True}
    handlers = {h["name"]: h for h in info["runtimeHandlers"]}
    assert set(handlers) >= {"runc", "crun"}
    assert "cgroupDriver" in crictl.out("runtime-config") or \
        "CGROUPFS" in crictl.out("runtime-config")
    crictl.run("config", "--set", "pull-image-on-create=false")
    assert crictl.out("config", "--get", "pull-image-on-create").strip() == "false"
    assert "pull-image-on-create: false" in crictl.config.read_text()


def test_images_pull_list_inspect_remove_prune(crictl: Crictl) -> None:
    out = crictl.out("pull", TEST_IMAGE)
    assert out.startswith("Image is up to date for sha256:")
    image_id = out.strip().rsplit(" ", 1)[1]
    table = crictl.out("images")
    assert re.search(r"gcr.io/k8s-staging-cri-tools/test-image-latest\s+latest\s+"
                     + image_id[7:20], table), table
    assert image_id[7:20] in crictl.out("images", "-q")
    assert crictl.out("images", "-q", "--no-trunc").split().count(image_id) == 1
    doc = crictl.json("inspecti", TEST_IMAGE)
    assert doc["status"]["id"] == image_id
    assert TEST_IMAGE in doc["status"]["repoTags"]
    fs = crictl.json("imagefsinfo")
    assert int(fs["status"]["imageFilesystems"][0]["usedBytes"]["value"]) > 0
    crictl.run("rmi", TEST_IMAGE)
    assert "test-image-latest" not in crictl.out("images")
    bad = crictl.run("rmi", "no/such:image", check=False)
    assert bad.returncode != 0 and "no/such:image" in bad.stderr
    # --prune removes every image no container uses
    crictl.run("pull", TAGGED)
    sid = crictl.out("runp", crictl.pod_config("prune")).strip()
    cid = crictl.out("create", sid, crictl.ctr_config("user", ["sleep", "600"]),
                     crictl.pod_config("prune")).strip()
    pruned = crictl.out("rmi", "--prune")
    assert "test-image-tags" in pruned or "Deleted" in pruned
    left = crictl.out("images")
    assert "test-image-tags" not in left and "e2e-test-images/busybox" in left
    crictl.run("rm", cid)
    crictl.run("rmp", "-f", sid)


def test_pods_lifecycle_filters_and_inspect(crictl: Crictl) -> None:
    a = crictl.out("runp", crictl.pod_config("alpha", labels={"tier": "web"})).strip()
    b = crictl.out("runp", crictl.pod_config("beta", labels={"tier": "db"})).strip()
    assert re.fullmatch(r"[0-9a-f]{64}", a)
    table = crictl.out("pods")
    assert "alpha" in table and "beta" in table and "Ready" in table
    assert crictl.out("pods", "-q", "--name", "alpha").split() == [a]
    assert crictl.out("pods", "-q", "--label", "tier=db").split() == [b]
    assert crictl.out("pods", "-q", "--namespace", "e2e", "--name", "^beta$").split() == [b]
    doc = crictl.json("inspectp", a)
    assert doc["status"]["state"] == "SANDBOX_READY"
    assert doc["status"]["network"]["ip"].startswith("10.91.0.")
    assert doc["status"]["metadata"]["name"] == "alpha"
    assert f"Stopped sandbox {a}" in crictl.out("stopp", a)
    assert crictl.out("pods", "-q", "--state", "notready").split() == [a]
    assert crictl.json("inspectp", a)["status"]["state"] == "SANDBOX_NOTREADY"
    assert f"Removed sandbox {a}" in crictl.out("rmp", a)
    # a ready pod needs -f
    refused = crictl.run("rmp", b, check=False)
    assert refused.returncode != 0
    assert f"Removed sandbox {b}" in crictl.out("rmp", "-f", b)
    c = crictl.out("runp", crictl.pod_config("gamma")).strip()
    d = crictl.out("runp", crictl.pod_config("delta")).strip()
    out = crictl.out("rmp", "-a", "-f")
    assert c in out and d in out
    assert crictl.out("pods", "-q") == ""


def test_containers_create_start_ps_inspect_exec_stop_rm(crictl: Crictl) -> None:
    pod = crictl.pod_config("ctrs")
    sid = crictl.out("runp", pod).strip()
    cid = crictl.out("create", sid, crictl.ctr_config("web", ["sleep", "600"],
                                                      labels={"app": "web"}), pod).strip()
    assert crictl.out("ps", "-a", "-q", "--state", "created").split() == [cid]
    crictl.run("start", cid)
    # `crictl run` makes a pod of its own from the pod config, then the container in it
    other = crictl.out("run", crictl.ctr_config("job", ["sh", "-c", "echo done"]),
                       crictl.pod_config("ctrs-run")).strip()
    assert re.fullmatch(r"[0-9a-f]{64}", other)
    run_pod = crictl.out("pods", "-q", "--name", "ctrs-run").strip()
    table = crictl.out("ps")
    assert "web" in table and "Running" in table
    assert crictl.out("ps", "-q", "--name", "web").split() == [cid]
    assert crictl.out("ps", "-q", "--label", "app=web").split() == [cid]
    assert crictl.out("ps", "-a", "-q", "--pod", sid).split() == [cid]
    assert crictl.out("ps", "-a", "-q", "--pod", run_pod).split() == [other]
    doc = crictl.json("inspect", cid)
    assert doc["status"]["state"] == "CONTAINER_RUNNING"
    assert doc["status"]["image"]["image"] == BUSYBOX
    assert doc["info"]["runtimeSpec"]["process"]["args"] == ["sleep", "600"]
    assert crictl.out("exec", "-s", cid, "sh", "-c", "echo hi; id -u").split() == ["hi", "0"]
    failed = crictl.run("exec", "-s", cid, "sh", "-c", "exit 3", check=False)
    assert failed.returncode != 0 and "exited with 3" in failed.stderr
    assert crictl.run("exec", "-s", "--timeout", "1", cid, "sleep", "30",
                      check=False).returncode != 0
    crictl.run("update", "--memory", str(128 << 20), "--cpu-share", "256", cid)
    res = crictl.json("inspect", cid)["status"]["resources"]["linux"]
    assert int(res["memoryLimitInBytes"]) == 128 << 20 and int(res["cpuShares"]) == 256
    assert cid in crictl.out("stop", "-t", "0", cid)
    assert crictl.json("inspect", cid)["status"]["state"] == "CONTAINER_EXITED"
    assert crictl.out("ps", "-q") == ""
    out = crictl.out("rm", cid, other)
    assert cid in out and other in out
    assert crictl.out("ps", "-a", "-q") == ""
    crictl.run("rmp", "-f", sid, run_pod)


def test_logs_tail_since_timestamps_follow_previous(crictl: Crictl) -> None:
    pod = crictl.pod_config("logs")
    sid = crictl.out("runp", pod).strip()
    first = crictl.out("create", sid, crictl.ctr_config(
        "talk", ["sh", "-c", "echo one; echo two >&2; sleep 0.2; echo three"]), pod).strip()
    crictl.run("start", first)
    deadline = time.monotonic() + 20
    while crictl.json("inspect", first)["status"]["state"] != "CONTAINER_EXITED":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    logs = crictl.run("logs", first)
    assert logs.stdout.split() == ["one", "three"] and logs.stderr.strip() == "two"
    assert crictl.run("logs", "--tail", "1", first).stdout.strip() == "three"
    stamped = crictl.out("logs", "--timestamps", first).splitlines()
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+\S* one$", stamped[0]), stamped
    assert crictl.run("logs", "--since", "1h", first).stdout.split() == ["one", "three"]
    time.sleep(2.5)  # the lines are now over two seconds old (crictl rounds to seconds)
    assert crictl.run("logs", "--since", "1s", first).stdout == ""
    # -f returns when the container has exited
    assert crictl.run("logs", "-f", first, timeout=20).stdout.split() == ["one", "three"]
    # attempt 1 of the same container; -p shows attempt 0's log
    second = crictl.out("create", sid, crictl.ctr_config("talk", ["sh", "-c", "echo again"],
                                                         attempt=1), pod).strip()
    prev = crictl.run("logs", "-p", second)
    assert prev.stdout.split() == ["one", "three"], prev
    crictl.run("rmp", "-f", sid)


def test_stats_statsp_metricsp_metricdescs(crictl: Crictl) -> None:
    pod = crictl.pod_config("stats")
    sid = crictl.out("runp", pod).strip()
    cid = crictl.out("create", sid, crictl.ctr_config("busy", ["sh", "-c", "while :; do :; done"]),
                     pod).strip()
    crictl.run("start", cid)
    time.sleep(1.5)
    stats = crictl.json("stats", "--id", cid)
    (s,) = stats["stats"]
    assert s["attributes"]["id"] == cid
    assert int(s["cpu"]["usageCoreNanoSeconds"]["value"]) > 0
    assert int(s["memory"]["workingSetBytes"]["value"]) > 0
    table = crictl.out("stats")
    assert "busy" in table
    podstats = crictl.json("statsp", "--id", sid)
    (p,) = podstats["stats"]
    assert p["attributes"]["id"] == sid
    assert int(p["linux"]["cpu"]["usageCoreNanoSeconds"]["value"]) > 0
    names = {d["name"] for d in crictl.json("metricdescs")["descriptors"]}
    assert "container_cpu_usage_seconds_total" in names
    metrics = crictl.json("metricsp")
    pods = {m["podSandboxId"]: m for m in metrics["podMetrics"]}
    (cm,) = pods[sid]["containerMetrics"]
    assert cm["containerId"] == cid
    assert "container_memory_working_set_bytes" in {m["name"] for m in cm["metrics"]}
    crictl.run("rmp", "-f", sid)


def test_events(crictl: Crictl) -> None:
    """`crictl events` streams what happens to containers, as JSON objects."""
    proc = subprocess.Popen(crictl.argv("events", "-o", "json"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        pod = crictl.pod_config("events")
        sid = crictl.out("runp", pod).strip()
        cid = crictl.out("create", sid, crictl.ctr_config("ev", ["true"]), pod).strip()
        crictl.run("start", cid)
        deadline = time.monotonic() + 20
        while crictl.json("inspect", cid)["status"]["state"] != "CONTAINER_EXITED":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        crictl.run("rm", cid)
        crictl.run("rmp", "-f", sid)
        time.sleep(0.5)
    finally:
        proc.terminate()  # our own child, by pid
        out, _ = proc.communicate(timeout=10)
    dec = json.JSONDecoder()
    events, i = [], 0
    while i < len(out):
        if out[i].isspace():
            i += 1
            continue
        obj, i = dec.raw_decode(out, i)
        events.append(obj)
    mine = [e for e in events if e.get("containerId") == cid]
    assert [e.get("containerEventType", "CONTAINER_CREATED_EVENT") for e in mine] == [
        "CONTAINER_CREATED_EVENT", "CONTAINER_STARTED_EVENT", "CONTAINER_STOPPED_EVENT",
        "CONTAINER_DELETED_EVENT"], out[:2000]
    assert mine[0]["podSandboxStatus"]["id"] == sid


NGINX = "registry.k8s.io/e2e-test-images/nginx:1.14-2"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_exec_streams_stdin_exit_codes_and_tty(crictl: Crictl) -> None:
    """crictl exec over SPDY: output, stdin (-i), exit codes, a TTY (-it) with its size."""
    pod = crictl.pod_config("exec")
    sid = crictl.out("runp", pod).strip()
    cid = crictl.out("create", sid, crictl.ctr_config("sh", ["sleep", "600"]), pod).strip()
    crictl.run("start", cid)
    assert crictl.out("exec", cid, "echo", "streamed").strip() == "streamed"
    res = subprocess.run(crictl.argv("exec", "-i", cid, "sh", "-c",
                                     "tr a-z A-Z; echo done >&2"), input="from stdin\n",
                         capture_output=True, text=True, timeout=60)
    assert (res.returncode, res.stdout, res.stderr.strip().splitlines()[-1]) == \
        (0, "FROM STDIN\n", "done")
    failed = crictl.run("exec", cid, "sh", "-c", "exit 5", check=False)
    assert failed.returncode != 0 and "exit code 5" in failed.stderr, failed
    # -t needs a terminal on crictl's side: give it one
    master, slave = os.openpty()
    import fcntl
    import struct
    import termios

    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))  # 40x100
    # no sleep before stty: the process starts at the client's size (runc alone gave its pty
    # no size until its first resize, and an immediate stty saw 0x0 one run in 40)
    proc = subprocess.Popen(crictl.argv("exec", "-it", cid, "sh", "-c",
                                        "stty size; tty; exit 3"),
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO once crictl is gone
            break
        if not chunk:
            break
        out += chunk
    rc = proc.wait(30)
    os.close(master)
    text = out.decode(errors="replace")
    assert "/dev/pts/" in text, text
    assert re.search(r"^40 100\s*$", text, re.M), text  # stty size: crictl's size, resized
    assert rc != 0 and "exit code 3" in text, text
    crictl.run("rmp", "-f", sid)


def test_attach(crictl: Crictl) -> None:
    pod = crictl.pod_config("attach")
    sid = crictl.out("runp", pod).strip()
    # stdin_once: the end of the client's input is the end of the container's stdin
    cid = crictl.out("create", sid, crictl.ctr_config("cat", ["sh", "-c", "cat; echo bye"],
                                                      stdin=True, stdin_once=True),
                     pod).strip()
    crictl.run("start", cid)
    res = subprocess.run(crictl.argv("attach", "-i", cid), input="echoed back\n",
                         capture_output=True, text=True, timeout=60)
    assert res.stdout == "echoed back\nbye\n", res
    deadline = time.monotonic() + 20
    while crictl.json("inspect", cid)["status"]["state"] != "CONTAINER_EXITED":
        assert time.monotonic() < deadline, "cat never saw the end of its stdin"
        time.sleep(0.1)
    # a container created without stdin cannot take any
    other = crictl.out("create", sid, crictl.ctr_config("nostdin", ["sleep", "600"]),
                       pod).strip()
    crictl.run("start", other)
    refused = crictl.run("attach", "-i", other, check=False)
    assert refused.returncode != 0 and "stdin" in refused.stderr
    crictl.run("rmp", "-f", sid)


def test_port_forward_http(crictl: Crictl) -> None:
    sid = _nginx_pod(crictl, "pf")
    local = _free_port()
    proc = subprocess.Popen(crictl.argv("port-forward", sid, f"{local}:80"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "Welcome to nginx!" in _get_through(local)
        _twenty_over_ten(local)  # many connections at once through the one forward
    finally:
        proc.terminate()  # our own child, by pid
        proc.wait(10)
    crictl.run("rmp", "-f", sid)


def test_streaming_urls_are_one_time(crictl: Crictl) -> None:
    """A URL's token works once: reused, forged or expired tokens get 404 and run nothing."""
    import urllib.error
    import urllib.request

    from shim.cri import api_pb2 as pb

    pod = crictl.pod_config("tokens")
    sid = crictl.out("runp", pod).strip()
    cid = crictl.out("create", sid, crictl.ctr_config("t", ["sleep", "600"]), pod).strip()
    crictl.run("start", cid)
    cri = crictl.node.daemon.client()
    try:
        url = cri.runtime.Exec(pb.ExecRequest(container_id=cid, cmd=["touch", "/ran"],
                                              stdout=True)).url
    finally:
        cri.close()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/exec/[A-Za-z0-9_-]{32}", url), url
    forged = url[:-4] + "AAAA"
    for u in (forged, url, url):  # forged, then the real one twice without an upgrade
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(urllib.request.Request(u, method="POST"), timeout=5)
        assert e.value.code in (400, 404), (u, e.value.code)
    assert crictl.run("exec", cid, "test", "-e", "/ran", check=False).returncode == 1
    crictl.run("rmp", "-f", sid)


def test_exec_and_attach_over_websocket(crictl: Crictl) -> None:
    """The same through `--transport websocket` (the channel protocol's binary messages)."""
    pod = crictl.pod_config("ws")
    sid = crictl.out("runp", pod).strip()
    cid = crictl.out("create", sid, crictl.ctr_config("cat", ["sh", "-c", "cat; echo bye"],
                                                      stdin=True, stdin_once=True),
                     pod).strip()
    crictl.run("start", cid)
    assert crictl.out("exec", "--transport", "websocket", cid, "echo", "over ws").strip() == \
        "over ws"
    res = subprocess.run(crictl.argv("exec", "--transport", "websocket", "-i", cid, "sh", "-c",
                                     "tr a-z A-Z; echo err >&2; exit 4"), input="piped\n",
                         capture_output=True, text=True, timeout=60)
    assert res.stdout == "PIPED\n" and "err" in res.stderr and "exit code 4" in res.stderr, res
    res = subprocess.run(crictl.argv("attach", "--transport", "websocket", "-i", cid),
                         input="through ws\n", capture_output=True, text=True, timeout=60)
    assert res.stdout == "through ws\nbye\n", res
    crictl.run("rmp", "-f", sid)


def test_a_client_that_goes_away_leaves_no_process(crictl: Crictl) -> None:
    pod = crictl.pod_config("gone")
    sid = crictl.out("runp", pod).strip()
    cid = crictl.out("create", sid, crictl.ctr_config("c", ["sleep", "600"]), pod).strip()
    crictl.run("start", cid)
    for transport in ("spdy", "websocket"):
        proc = subprocess.Popen(crictl.argv("exec", "--transport", transport, cid,
                                            "sh", "-c", "sleep 301 & sleep 302"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while "sleep 30" not in crictl.out("exec", "-s", cid, "ps", "-o", "args"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        proc.kill()  # our own child, by pid: the client is gone mid-stream
        proc.wait()
        deadline = time.monotonic() + 10
        while "sleep 30" in (ps := crictl.out("exec", "-s", cid, "ps", "-o", "stat,args")):
            assert time.monotonic() < deadline, (transport, ps)
            time.sleep(0.2)
    crictl.run("rmp", "-f", sid)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_100_mb_through_exec_and_20_sessions_at_once(crictl: Crictl) -> None:
    pod = crictl.pod_config("bulk")
    sid = crictl.out("runp", pod).strip()
    cid = crictl.out("create", sid, crictl.ctr_config("c", ["sleep", "600"]), pod).strip()
    crictl.run("start", cid)
    assert crictl.node.daemon.proc is not None
    pid = crictl.node.daemon.proc.pid
    before = _rss_kib(pid)
    proc = subprocess.Popen(crictl.argv("exec", cid, "head", "-c", "100000000", "/dev/zero"),
                            stdout=subprocess.PIPE)
    assert proc.stdout is not None
    total = 0
    while chunk := proc.stdout.read(1 << 20):
        total += len(chunk)
    assert proc.wait(120) == 0
    assert total == 100_000_000
    grown = (_rss_kib(pid) - before) / 1024
    assert grown < 10, f"daemon RSS grew {grown:.1f} MiB for 100 MB through one exec"
    import concurrent.futures

    def one(i: int) -> str:
        return crictl.out("exec", cid, "sh", "-c", f"sleep 0.5; echo session{i}").strip()

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        assert list(pool.map(one, range(20))) == [f"session{i}" for i in range(20)]
    crictl.run("rmp", "-f", sid)


def test_session_cap_idle_timeout_and_metrics(critest_registry: RegistryServer,
                                              tmp_path: Path) -> None:
    binary = require_tool("crictl")
    node = start_node(tmp_path, critest_registry, bridge="e2ecap0", subnet="10.91.1.0/24",
                      extra={"streaming": {"max_sessions": 2, "idle_timeout_seconds": 2.0}})
    c = Crictl(binary, node, tmp_path / "crictl.yaml", tmp_path / "work")
    c.work.mkdir()
    c.config.write_text("")
    try:
        c.run("pull", BUSYBOX, timeout=120)
        pod = c.pod_config("cap")
        sid = c.out("runp", pod).strip()
        cid = c.out("create", sid, c.ctr_config("c", ["sleep", "600"]), pod).strip()
        c.run("start", cid)
        chatty = [subprocess.Popen(c.argv("exec", cid, "sh", "-c",
                                          "while :; do echo x; sleep 0.3; done"),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                  for _ in range(2)]
        try:
            time.sleep(2)
            refused = c.run("exec", cid, "true", check=False)
            assert refused.returncode != 0 and "max_sessions" in refused.stderr, refused
            assert all(p.poll() is None for p in chatty)  # busy sessions are not idle
        finally:
            for p in chatty:
                p.kill()  # our own children, by pid
                p.wait()
        import urllib.request

        def scrape() -> str:
            url = f"http://127.0.0.1:{node.daemon.metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as r:
                return str(r.read().decode())

        deadline = time.monotonic() + 20  # the killed clients' sessions wind down
        while 'tether_streaming_sessions{kind="exec"} 0.0' not in scrape():
            assert time.monotonic() < deadline, scrape()
            time.sleep(0.2)
        t = time.monotonic()
        idle = c.run("exec", cid, "sleep", "60", check=False, timeout=30)
        assert "max_sessions" not in idle.stderr, idle
        assert time.monotonic() - t < 10, idle  # closed after 2 s without data
        deadline = time.monotonic() + 20
        while 'tether_streaming_sessions{kind="exec"} 0.0' not in (text := scrape()):
            assert time.monotonic() < deadline, text
            time.sleep(0.2)
        assert re.search(r'tether_streaming_refused_total\{reason="busy"\} [1-9]', text), text
        assert re.search(r'tether_streaming_sessions_served_total\{kind="exec",'
                         r'transport="spdy"\} [3-9]', text), text
        assert re.search(r'tether_streaming_bytes_total\{direction="out",kind="exec"\} '
                         r'[1-9]', text), text
        c.run("rmp", "-f", sid)
    finally:
        node.stop()


def _get_through(local: int, timeout: float = 30) -> str:
    """GET / through a local forward, retried until the forward listens."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=5) as r:
                return str(r.read().decode())
        except OSError:
            assert time.monotonic() < deadline, "port-forward never answered"
            time.sleep(0.3)


def _twenty_over_ten(local: int) -> None:
    """20 requests over 10 connections at once through a local forward, all answered."""
    import concurrent.futures
    import urllib.request

    def get(_: int) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=10) as r:
            return int(r.status)

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        assert list(pool.map(get, range(20))) == [200] * 20


def _nginx_pod(crictl: Crictl, name: str) -> str:
    crictl.run("pull", NGINX, timeout=120)
    pod = crictl.pod_config(name)
    sid = crictl.out("runp", pod).strip()
    cid = crictl.out("create", sid, crictl.ctr_config("web", [], image=NGINX), pod).strip()
    crictl.run("start", cid)
    return sid


def _session_lines(node: Node, kind: str) -> list[dict[str, Any]]:
    out = []
    for line in node.daemon.logs().splitlines():
        with_json = line.strip().startswith("{")
        rec = json.loads(line) if with_json else {}
        if rec.get("event") == "stream session" and rec.get("kind") == kind:
            out.append(rec)
    return out


def test_port_forward_over_websocket_and_a_closed_port(crictl: Crictl) -> None:
    """crictl's `--transport websocket` port-forward is client-go's SPDY-over-WebSocket
    tunnel (it offers `SPDY/3.1+portforward.k8s.io`): HTTP through it, many connections at
    once; a closed port answers on the error stream, on both transports."""
    import socket

    sid = _nginx_pod(crictl, "pfws")
    before = len(_session_lines(crictl.node, "portforward"))
    local = _free_port()
    proc = subprocess.Popen(crictl.argv("port-forward", "--transport", "websocket", sid,
                                        f"{local}:80"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "Welcome to nginx!" in _get_through(local)
        _twenty_over_ten(local)
    finally:
        proc.terminate()  # our own child, by pid
        proc.wait(10)
    deadline = time.monotonic() + 10
    while len(lines := _session_lines(crictl.node, "portforward")) == before:
        assert time.monotonic() < deadline, "no session line for the forward"
        time.sleep(0.2)
    assert (lines[-1]["transport"], lines[-1]["protocol"]) == \
        ("websocket", "SPDY/3.1+portforward.k8s.io"), lines[-1]
    for transport in ("spdy", "websocket"):  # nothing listens on 81
        local = _free_port()
        proc = subprocess.Popen(crictl.argv("port-forward", "--transport", transport, sid,
                                            f"{local}:81"),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    conn = socket.create_connection(("127.0.0.1", local), timeout=5)
                    break
                except OSError:
                    assert time.monotonic() < deadline, "port-forward never listened"
                    time.sleep(0.3)
            with conn:
                conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
                try:
                    got = conn.recv(4096)  # closed without an answer
                except ConnectionResetError:
                    got = b""
                assert got == b"", got
        finally:
            proc.terminate()  # our own child, by pid
            out, _ = proc.communicate(timeout=10)
        assert "error forwarding port 81" in out and "refused" in out, (transport, out)
    crictl.run("rmp", "-f", sid)


def _ws_messages(url: str, subprotocol: str, send: Sequence[bytes | str] = (),
                 **kw: Any) -> list[bytes | str]:
    """What a raw WebSocket client (the `websockets` library's) receives from a streaming URL
    until the server closes, after sending ``send``."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect
    from websockets.typing import Subprotocol

    got: list[bytes | str] = []
    with connect(url.replace("http", "ws", 1), subprotocols=[Subprotocol(subprotocol)],
                 open_timeout=10, **kw) as conn:
        assert conn.subprotocol == subprotocol
        for message in send:
            conn.send(message)
        try:
            while True:
                got.append(conn.recv(timeout=30))
        except ConnectionClosed:
            pass
    return got


def _channels(messages: list[bytes | str]) -> dict[int, bytes]:
    """Each channel's data, the messages' payloads joined (base64 ones decoded)."""
    import base64

    out: dict[int, bytes] = {}
    for m in messages:
        if isinstance(m, str):
            ch, data = ord(m[0]) - ord("0"), base64.b64decode(m[1:])
        else:
            ch, data = m[0], m[1:]
        out[ch] = out.get(ch, b"") + data
    return out


def test_port_forward_over_the_kubelets_websocket_channels(crictl: Crictl) -> None:
    """The kubelet's websocket port-forward (`v4.channel.k8s.io`, `v4.base64.channel.k8s.io`),
    as a raw client speaks it: ports from the `port` query parameters, per port channels 2i
    (data) and 2i+1 (error) opened with the port (2 bytes, little-endian)."""
    from shim.cri import api_pb2 as pb

    sid = _nginx_pod(crictl, "pfchan")
    cri = crictl.node.daemon.client()
    try:
        def url(*ports: int) -> str:
            return cri.runtime.PortForward(pb.PortForwardRequest(pod_sandbox_id=sid,
                                                                 port=list(ports))).url
        get = b"GET / HTTP/1.0\r\n\r\n"
        got = _channels(_ws_messages(url(80, 81) + "?port=80&port=81", "v4.channel.k8s.io",
                                     [b"\x00" + get]))
        assert got[0][:2] == b"\x50\x00" and "Welcome to nginx!" in got[0][2:].decode(), got
        assert got[1] == b"\x50\x00", got  # port 80's error channel: the port, no error
        assert got[2] == b"\x51\x00", got  # 81: nothing listens
        assert got[3][:2] == b"\x51\x00" and b"error forwarding port 81" in got[3], got
        import base64

        messages = _ws_messages(url() + "?port=80", "v4.base64.channel.k8s.io",
                                ["0" + base64.b64encode(get).decode()])
        assert all(isinstance(m, str) for m in messages), messages
        got = _channels(messages)
        assert got[0][:2] == b"\x50\x00" and b"Welcome to nginx!" in got[0], got
        # a port the request did not name, or none at all: refused before the upgrade
        from websockets.exceptions import InvalidStatus

        for u in (url(80) + "?port=81", url(80)):
            with pytest.raises(InvalidStatus) as e:
                _ws_messages(u, "v4.channel.k8s.io")
            assert e.value.response.status_code == 400
    finally:
        cri.close()
    crictl.run("rmp", "-f", sid)


def test_exec_over_websocket_base64_channels(crictl: Crictl) -> None:
    """`base64.channel.k8s.io`: text messages, the channel an ASCII digit, data base64."""
    import base64

    from shim.cri import api_pb2 as pb

    pod = crictl.pod_config("b64")
    sid = crictl.out("runp", pod).strip()
    cid = crictl.out("create", sid, crictl.ctr_config("c", ["sleep", "600"]), pod).strip()
    crictl.run("start", cid)
    cri = crictl.node.daemon.client()
    try:
        url = cri.runtime.Exec(pb.ExecRequest(
            container_id=cid, cmd=["sh", "-c", "read l; echo got $l; echo err >&2; exit 3"],
            stdin=True, stdout=True, stderr=True)).url
    finally:
        cri.close()
    messages = _ws_messages(url, "base64.channel.k8s.io",
                            ["0" + base64.b64encode(b"hello\n").decode()])
    assert all(isinstance(m, str) and m[0] in "123" for m in messages), messages
    got = _channels(messages)
    assert (got[1], got[2]) == (b"got hello\n", b"err\n"), got
    assert got[3] == b"command terminated with exit code 3", got  # before v4: plain text
    crictl.run("rmp", "-f", sid)


def test_streaming_over_tls(critest_registry: RegistryServer, tmp_path: Path) -> None:
    """`[streaming] tls_cert/tls_key` make the URLs https; with `tls_ca` a client must
    present a certificate the CA signed: a verifying client with one
    execs, one without is refused and nothing runs, and so is crictl (it has none). Without
    a CA crictl streams over https (it does not check the server's certificate)."""
    import ssl

    from websockets.exceptions import InvalidStatus, WebSocketException

    from shim.cri import api_pb2 as pb
    from tests.rig.tlscerts import make_certs

    binary = require_tool("crictl")
    certs = make_certs(tmp_path / "pki")
    cert, key = (str(p) for p in certs.server)
    for name, ca in (("mtls", str(certs.ca)), ("tls", "")):
        node = start_node(tmp_path / name, critest_registry, bridge=f"e2e{name}0",
                          subnet=f"10.91.{2 if ca else 3}.0/24",
                          extra={"streaming": {"tls_cert": cert, "tls_key": key,
                                               "tls_ca": ca}})
        c = Crictl(binary, node, tmp_path / name / "crictl.yaml", tmp_path / name / "work")
        c.work.mkdir()
        c.config.write_text("")
        try:
            c.run("pull", BUSYBOX, timeout=120)
            pod = c.pod_config(name)
            sid = c.out("runp", pod).strip()
            cid = c.out("create", sid, c.ctr_config("c", ["sleep", "600"]), pod).strip()
            c.run("start", cid)
            cri = node.daemon.client()

            def exec_url(*cmd: str, cri: Any = cri, cid: str = cid) -> str:
                return str(cri.runtime.Exec(pb.ExecRequest(container_id=cid, cmd=list(cmd),
                                                           stdout=True)).url)
            try:
                url = exec_url("echo", "over tls")
                assert re.fullmatch(r"https://127\.0\.0\.1:\d+/exec/[A-Za-z0-9_-]{32}", url)
                verifying = ssl.create_default_context(cafile=str(certs.ca))
                if ca:
                    verifying.load_cert_chain(*(str(p) for p in certs.client))
                got = _channels(_ws_messages(url, "v4.channel.k8s.io", ssl=verifying))
                assert got[1] == b"over tls\n" and b'"Success"' in got[3], got
                # a client that does not trust our CA refuses the server's certificate
                with pytest.raises(ssl.SSLCertVerificationError):
                    _ws_messages(exec_url("true"), "v4.channel.k8s.io",
                                 ssl=ssl.create_default_context())
                if ca:
                    # without a client certificate: a 403 that says why, nothing runs
                    anonymous = ssl.create_default_context(cafile=str(certs.ca))
                    with pytest.raises(InvalidStatus) as refusal:
                        _ws_messages(exec_url("touch", "/ran"), "v4.channel.k8s.io",
                                     ssl=anonymous)
                    assert refusal.value.response.status_code == 403
                    assert b"client certificate" in refusal.value.response.body
                    # a certificate the CA did not sign: refused in the handshake
                    stranger = make_certs(tmp_path / "pki-other")
                    forged = ssl.create_default_context(cafile=str(certs.ca))
                    forged.load_cert_chain(*(str(p) for p in stranger.client))
                    with pytest.raises((ssl.SSLError, OSError, WebSocketException)):
                        _ws_messages(exec_url("touch", "/ran"), "v4.channel.k8s.io",
                                     ssl=forged)
                    assert c.run("exec", "-s", cid, "test", "-e", "/ran",
                                 check=False).returncode == 1
                    refused = c.run("exec", cid, "echo", "hi", check=False)
                    # crictl presents no certificate
                    assert refused.returncode != 0 and "client certificate" in \
                        refused.stderr, refused
                else:
                    assert c.out("exec", cid, "echo", "crictl over https").strip() == \
                        "crictl over https"
            finally:
                cri.close()
            c.run("rmp", "-f", sid)
        finally:
            node.stop()
