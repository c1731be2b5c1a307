"""kubectl exec and port-forward through a real kubelet to Tether's streaming server over
TLS (a kube of its own, tests/rig/kube.py; it cannot share test_kubelet.py's, which owns the
node's address): what the kubelet's proxy to an https URL checks, and what it presents."""

from __future__ import annotations

import subprocess
import time
import tomllib
import urllib.request
from collections.abc import Iterator

import pytest
import tomli_w

from tests.e2e.test_kubelet import NGINX, container, delete, exec_, pod, run_ready, wait_for
from tests.rig.kube import Kube, require_kube_tools
from tests.rig.registry import RegistryServer
from tests.rig.tlscerts import TestCerts, make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TestCerts:
    return make_certs(tmp_path_factory.mktemp("streaming-pki"))


@pytest.fixture(scope="module")
def kube(critest_registry: RegistryServer, certs: TestCerts,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    k = Kube(tmp_path_factory.mktemp("kubetls"), critest_registry, require_kube_tools(),
             node_extra={"streaming": {"tls_cert": str(certs.server[0]),
                                       "tls_key": str(certs.server[1])}})
    try:
        k.up()
        yield k
    finally:
        k.down()


def _restart_tether_with(kube: Kube, **streaming: str) -> None:
    assert kube.node is not None
    d = kube.node.daemon
    cfg = tomllib.loads(d.config_text)
    cfg["streaming"].update(streaming)
    d.stop()
    d.config_text = tomli_w.dumps(cfg)
    d.start()


def test_kubectl_streams_through_the_kubelet_over_https(kube: Kube, certs: TestCerts) -> None:
    """The kubelet checks the streaming server's certificate against the node's roots (Go's:
    SSL_CERT_FILE points them at the test CA) and presents no client certificate: it streams
    over https with tls_cert/tls_key, is refused with tls_ca as well."""
    run_ready(kube, pod("tls", container("main", image=NGINX)), timeout=90)
    # the kubelet does not know the CA yet: it refuses the server's certificate
    res = exec_(kube, "tls", "echo", "hi", check=False)
    assert res.returncode != 0 and "x509" in res.stderr, res
    kube.stop_kubelet()
    kube.kubelet_env = {"SSL_CERT_FILE": str(certs.ca)}
    kube.start_kubelet()
    wait_for("exec over https through the kubelet", lambda: exec_(
        kube, "tls", "echo", "over https", check=False).stdout == "over https\n")
    assert exec_(kube, "tls", "cat", stdin="stdin too\n").stdout == "stdin too\n"
    local = free_local_port()
    proc = subprocess.Popen([kube.tools["kubectl"], "--kubeconfig", str(kube.admin_kubeconfig),
                             "port-forward", "pod/tls", f"{local}:80"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=5) as r:
                    assert "Welcome to nginx!" in r.read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline, "port-forward never answered"
                time.sleep(0.3)
    finally:
        proc.terminate()  # our own child, by pid
        proc.wait(10)
    # client certificates required: the kubelet has none to present
    _restart_tether_with(kube, tls_ca=str(certs.ca))

    def refused() -> str:
        r = exec_(kube, "tls", "echo", "hi", check=False)
        assert r.stdout != "hi\n", r
        return r.stderr if "client certificate" in r.stderr else ""
    # the kubelet relays the server's 403, which says why
    wait_for("the kubelet refused for want of a client certificate", refused)
    delete(kube, "tls")


def free_local_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


