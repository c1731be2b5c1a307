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
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.rig.critest import require_tool
from tests.rig.kube import HOW_TO_GET, NODE_IP, NODE_NAME, Kube, KubeError, find_kube_tools
from tests.rig.registry import RegistryServer

BUSYBOX = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
NGINX = "registry.k8s.io/e2e-test-images/nginx:1.14-2"


@pytest.fixture(scope="module")
def kube(critest_registry: RegistryServer, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Kube]:
    require_tool("crictl")
    tools = find_kube_tools()
    missing = [n for n, p in tools.items() if not p]
    if missing:
        msg = f"kubelet stage: {', '.join(missing)} not found: {HOW_TO_GET}"
        if os.environ.get("CI") == "true":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    k = Kube(tmp_path_factory.mktemp("kube"), critest_registry,
             {n: p for n, p in tools.items() if p})
    try:
        k.up()
        yield k
    finally:
        k.down()


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
    args = ["delete", "pod", *names, "--timeout=90s", "--wait=true"]
    if grace is not None:
        args.append(f"--grace-period={grace}")
    kube.kubectl(*args, timeout=120)


def sandboxes(kube: Kube, name: str) -> list[str]:
    return kube.crictl("pods", "-q", "--name", f"^{name}$").stdout.split()


def exec_(kube: Kube, name: str, *cmd: str, c: str = "main", stdin: str | None = None,
          check: bool = True) -> subprocess.CompletedProcess[str]:
    args = ["exec", *(["-i"] if stdin is not None else []), name, "-c", c, "--", *cmd]
    return kube.kubectl(*args, input=stdin, check=check)


# ------------------------------------------------------------------ cases

def test_node_ready_reports_tether(kube: Kube) -> None:
    node = kube.get("node", NODE_NAME)
    info = node["status"]["nodeInfo"]
    assert info["containerRuntimeVersion"].startswith("tether://"), info
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
    # a TTY: kubectl needs a terminal of its own for -t, so script(1) gives it one
    res = subprocess.run(["script", "-qec", "stty rows 33 cols 101; "
                          f"{kube.tools['kubectl']} --kubeconfig "
                          f"{kube.admin_kubeconfig} exec -it basic -- sh -c 'tty; stty size'",
                          "/dev/null"], capture_output=True, text=True, timeout=60,
                         stdin=subprocess.DEVNULL, check=False)
    assert res.returncode == 0, res
    assert "/dev/pts/" in res.stdout and re.search(r"^33 101\r?$", res.stdout, re.M), res
    missing = exec_(kube, "basic", "no-such-command", check=False)
    assert missing.returncode != 0 and "no-such-command" in missing.stderr + missing.stdout
    delete(kube, "basic")
    wait_for("sandbox gone", lambda: not sandboxes(kube, "basic"), timeout=120)
