"""Credentials: from the request (username/password, auth, identity token) or the global auth
file; wrong or missing ones are UNAUTHENTICATED; they never land in logs, store or run dir."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from shim.cri import api_pb2 as pb
from tests.integration.images_fixtures import *  # noqa: F403  (fixtures)
from tests.integration.images_fixtures import ImageDaemon, StartDaemon, daemon_config
from tests.rig.images import push_image
from tests.rig.registry import RegistryServer

USER, PASSWORD = "alice", "pw-Zq81-never-logged"


@pytest.fixture
def private_registry(
    registry_factory: Callable[..., RegistryServer], test_images: Path
) -> tuple[RegistryServer, str]:
    reg = registry_factory(auth=(USER, PASSWORD))
    pushed = push_image(reg.host, "busybox", cache_dir=test_images, creds=reg.creds)
    return reg, pushed.ref


def _leaks(d: ImageDaemon) -> list[str]:
    """Places under the daemon's dirs (and its log) where the password shows."""
    found = []
    for p in [d.daemon.log_path, *d.daemon.base.rglob("*")]:
        if p.is_file() and not p.is_symlink():
            data = p.read_bytes()
            if PASSWORD.encode() in data or base64.b64encode(
                    f"{USER}:{PASSWORD}".encode()) in data:
                found.append(str(p))
    return found


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
    # no credential file outlives its pull; nothing holds the password
    assert list((d.daemon.run_dir / "images" / "auth").iterdir()) == []
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


def test_registry_token_refused(
    private_registry: tuple[RegistryServer, str], start_image_daemon: StartDaemon
) -> None:
    reg, ref = private_registry
    d = start_image_daemon(daemon_config(insecure=[reg.host]))
    err = d.pull_error(ref, pb.AuthConfig(registry_token="tok-secret"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "registry_token" in err.details() and "tok-secret" not in err.details()
