"""Credentials: from the request (username/password, auth, identity token, registry token) or
the global auth file; wrong or missing ones are UNAUTHENTICATED, a repository the user may not
read PERMISSION_DENIED; they never land in logs, store, run dir or a command line.

Basic-auth registries: a docker-registry with an htpasswd file (``private_registry``).
Bearer token flow (Docker Hub style): ``token_gate`` (tests/rig/tokengate.py) in front of the
session registry, with a token server that takes Basic credentials, a refresh (identity) token or
a password grant, and a pre-shared registry token.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from bench.procs import descendants, snapshot
from shim.cri import api_pb2 as pb
from tests.integration.images_fixtures import *  # noqa: F403  (fixtures)
from tests.integration.images_fixtures import (
    GATE_PASSWORD,
    GATE_USER,
    ImageDaemon,
    StartDaemon,
    daemon_config,
)
from tests.rig.images import push_image
from tests.rig.registry import RegistryServer
from tests.rig.tokengate import TokenGate

USER, PASSWORD = "alice", "pw-Zq81-never-logged"


@pytest.fixture
def private_registry(
    registry_factory: Callable[..., RegistryServer], test_images: Path
) -> tuple[RegistryServer, str]:
    reg = registry_factory(auth=(USER, PASSWORD))
    pushed = push_image(reg.host, "busybox", cache_dir=test_images, creds=reg.creds)
    return reg, pushed.ref


def _b64(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def _leaks(d: ImageDaemon, secret: Mapping[str, str] | None = None) -> list[str]:
    """Files under the daemon's dirs (and its log) where a secret shows, as "path: name".
    ``secret``: name -> value; default: the password and base64 user:password."""
    if secret is None:
        secret = {"password": PASSWORD, "basic": _b64(USER, PASSWORD)}
    found = []
    for p in [d.daemon.log_path, *d.daemon.base.rglob("*")]:
        if p.is_file() and not p.is_symlink():
            data = p.read_bytes()
            found += [f"{p}: {name}" for name, value in secret.items()
                      if value and value.encode() in data]
    return found


@contextmanager
def _watch_cmdlines(d: ImageDaemon, secret: Callable[[], Mapping[str, str]]
                    ) -> Iterator[list[str]]:
    """While the block runs, keep reading /proc/<pid>/cmdline and environ of the daemon's
    process tree; the list yielded gets "pid file: name" for each secret seen there."""
    assert d.daemon.proc is not None
    root = d.daemon.proc.pid
    found: list[str] = []
    done = threading.Event()
    seen = {"samples": 0}

    def sample() -> None:
        while not done.is_set():
            current = secret()
            for pid in sorted(descendants(snapshot().procs.values(), [root])):
                for name in ("cmdline", "environ"):
                    try:
                        data = Path(f"/proc/{pid}/{name}").read_bytes()
                    except OSError:
                        continue
                    found.extend(f"{pid} {name}: {k}" for k, v in current.items()
                                 if v and v.encode() in data and
                                 f"{pid} {name}: {k}" not in found)
            seen["samples"] += 1
            done.wait(0.005)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        yield found
    finally:
        done.set()
        t.join(10)
    assert seen["samples"] > 0


def _gate_secrets(gate: TokenGate, *extra: str) -> dict[str, str]:
    """Every secret of the gate (and ``extra`` ones) by name, never by value."""
    out = {"password": GATE_PASSWORD, "basic": _b64(GATE_USER, GATE_PASSWORD)}
    assert gate.identity_token and gate.registry_token
    out["identity_token"] = gate.identity_token
    out["registry_token"] = gate.registry_token
    out.update({f"issued token #{i}": t for i, t in enumerate(gate.issued_tokens)})
    out.update({f"extra #{i}": t for i, t in enumerate(extra)})
    out.update({f"gate secret #{i}": t for i, t in enumerate(gate.secrets())
                if t not in out.values()})
    return out


def _no_secret_in(text: str, gate: TokenGate, *extra: str) -> None:
    shown = [name for name, v in _gate_secrets(gate, *extra).items() if v in text]
    assert shown == [], f"secrets shown: {shown}"


@pytest.fixture
def gate_daemon(token_gate: TokenGate, start_image_daemon: StartDaemon) -> ImageDaemon:
    """A daemon that reaches the gate over plain HTTP."""
    return start_image_daemon(daemon_config(insecure=[token_gate.host]))


def test_request_credentials(
    private_registry: tuple[RegistryServer, str], start_image_daemon: StartDaemon
) -> None:
    reg, ref = private_registry
    d = start_image_daemon(daemon_config(insecure=[reg.host]))
    err = d.pull_error(ref)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err.details()
    assert ref in err.details()
    err = d.pull_error(ref, pb.AuthConfig(username=USER, password="wrong"))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err.details()
    image_id = d.pull(ref, pb.AuthConfig(username=USER, password=PASSWORD))
    assert image_id.startswith("sha256:")
    d.remove(image_id)
    b64 = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert d.pull(ref, pb.AuthConfig(auth=b64, server_address=reg.host)) == image_id
    # no credential file (outlives its pull); nothing holds the password
    auth_dir = d.daemon.run_dir / "images" / "auth"
    assert not auth_dir.exists() or list(auth_dir.iterdir()) == []
    d.stop()
    assert _leaks(d) == []


def test_global_auth_file(
    private_registry: tuple[RegistryServer, str], start_image_daemon: StartDaemon,
    tmp_path: Path,
) -> None:
    reg, ref = private_registry
    auth_json = tmp_path / "auth.json"
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    auth_json.write_text(json.dumps({"auths": {reg.host: {"auth": token}}}))
    auth_json.chmod(0o600)
    d = start_image_daemon(daemon_config(insecure=[reg.host], auth_file=str(auth_json)))
    assert d.pull(ref).startswith("sha256:")
    # request credentials win over the file's
    err = d.pull_error(ref, pb.AuthConfig(username=USER, password="wrong"))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


# ---------------------------------------------------------------- Bearer token flow (token_gate)


def test_registry_token(token_gate: TokenGate, gate_daemon: ImageDaemon) -> None:
    gate, d = token_gate, gate_daemon
    ref = gate.ref("busybox")
    wrong = "rgt-" + secrets.token_hex(20)
    err = d.pull_error(ref, pb.AuthConfig(registry_token=wrong))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err.details()
    assert ref in err.details()
    _no_secret_in(err.details(), gate, wrong)
    gate.clear_records()
    assert gate.registry_token
    image_id = d.pull(ref, pb.AuthConfig(registry_token=gate.registry_token))
    assert image_id.startswith("sha256:")
    # used as is: Bearer on /v2/, no token-server round trip
    assert gate.token_requests == []
    assert gate.scheme_counts().get("Bearer", 0) >= 2, gate.requests
    assert any("/manifests/" in r.path and r.status == 200 for r in gate.requests)


def test_identity_token(token_gate: TokenGate, gate_daemon: ImageDaemon) -> None:
    gate, d = token_gate, gate_daemon
    ref = gate.ref("busybox")
    wrong = "idt-" + secrets.token_hex(20)
    err = d.pull_error(ref, pb.AuthConfig(identity_token=wrong))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err.details()
    assert ref in err.details()
    _no_secret_in(err.details(), gate, wrong)
    gate.clear_records()
    assert gate.identity_token
    image_id = d.pull(ref, pb.AuthConfig(identity_token=gate.identity_token,
                                         server_address=gate.host))
    assert image_id.startswith("sha256:")
    grants = [t for t in gate.token_requests if t.status == 200]
    assert grants, gate.token_requests
    assert all(t.grant == "refresh_token" and t.method == "POST" for t in grants), grants
    assert all(t.client_id == "tether" and t.service == "tether-gate" for t in grants), grants
    assert any("repository:busybox:pull" in t.scope for t in grants), grants
    assert gate.scheme_counts().get("Bearer", 0) >= 2, gate.requests


def test_password_bearer_flow(token_gate: TokenGate, gate_daemon: ImageDaemon) -> None:
    gate, d = token_gate, gate_daemon
    ref = gate.ref("busybox")
    err = d.pull_error(ref, pb.AuthConfig(username=GATE_USER, password="wrong-pw"))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err.details()
    assert ref in err.details()
    _no_secret_in(err.details(), gate, "wrong-pw")
    gate.clear_records()
    image_id = d.pull(ref, pb.AuthConfig(username=GATE_USER, password=GATE_PASSWORD))
    assert image_id.startswith("sha256:")
    ok = [t for t in gate.token_requests if t.status == 200]
    assert ok and all(t.grant == "basic" and t.method == "GET" and t.user == GATE_USER
                      for t in ok), gate.token_requests
    assert any("repository:busybox:pull" in t.scope and t.service == "tether-gate"
               for t in ok), ok
    counts = gate.scheme_counts()
    assert counts.get("Bearer", 0) >= 2 and "Basic" not in counts, gate.requests
    # the same through ``auth`` (base64 user:password)
    d.remove(image_id)
    gate.clear_records()
    auth = _b64(GATE_USER, GATE_PASSWORD)
    assert d.pull(ref, pb.AuthConfig(auth=auth, server_address=gate.host)) == image_id
    assert "basic" in gate.grants(), gate.token_requests


def test_anonymous_and_denied(token_gate: TokenGate, gate_daemon: ImageDaemon) -> None:
    gate, d = token_gate, gate_daemon
    ref = gate.ref("busybox")
    err = d.pull_error(ref)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err.details()
    assert ref in err.details()
    assert gate.grants() == [], gate.token_requests  # no token for anyone
    # bob has a valid token, but may only read "web"
    bob_pw = "pw-bob-" + secrets.token_hex(8)
    gate.add_user("bob", bob_pw, repos=["web"])
    err = d.pull_error(ref, pb.AuthConfig(username="bob", password=bob_pw))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED, err.details()
    assert ref in err.details()
    _no_secret_in(err.details(), gate, bob_pw)
    assert any(r.status == 403 for r in gate.requests), gate.requests
    assert d.pull(gate.ref("web"), pb.AuthConfig(username="bob", password=bob_pw)).startswith(
        "sha256:")


def test_bearer_secrets_never_leak(token_gate: TokenGate, gate_daemon: ImageDaemon) -> None:
    """Over pulls with each kind of credential (right and wrong): no secret in the daemon's
    log, in a file under its dirs, nor in a command line or environment of its processes."""
    gate, d = token_gate, gate_daemon
    ref = gate.ref("busybox")
    assert gate.identity_token and gate.registry_token
    wrong = ["wrong-" + secrets.token_hex(8), "rgt-" + secrets.token_hex(20),
             "idt-" + secrets.token_hex(20)]
    good = [
        pb.AuthConfig(registry_token=gate.registry_token),
        pb.AuthConfig(identity_token=gate.identity_token),
        pb.AuthConfig(username=GATE_USER, password=GATE_PASSWORD),
        pb.AuthConfig(auth=_b64(GATE_USER, GATE_PASSWORD), server_address=gate.host),
    ]
    bad = [
        pb.AuthConfig(username=GATE_USER, password=wrong[0]),
        pb.AuthConfig(registry_token=wrong[1]),
        pb.AuthConfig(identity_token=wrong[2]),
    ]
    with _watch_cmdlines(d, lambda: _gate_secrets(gate, *wrong)) as in_proc:
        for auth in bad:
            err = d.pull_error(ref, auth)
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err.details()
            _no_secret_in(err.details(), gate, *wrong)
        for auth in good:
            image_id = d.pull(ref, auth)
            assert image_id.startswith("sha256:")
            d.remove(image_id)
    assert in_proc == []
    assert gate.issued_tokens  # the Basic and refresh grants gave some
    auth_dir = d.daemon.run_dir / "images" / "auth"
    assert not auth_dir.exists() or list(auth_dir.iterdir()) == []
    d.stop()
    assert _leaks(d, _gate_secrets(gate, *wrong)) == []
