"""Pulls from a registry that speaks TLS: CAs and client certificates from certs.d, insecure
registries (TLS without verification), and what kubelet sees when the certificate cannot be
verified or the registry wants a client certificate that tether does not have.

Every daemon here gets ``certs_dirs`` explicitly, so the host's /etc/{containers,docker}/certs.d
never matter."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from tests.integration.images_fixtures import *  # noqa: F403  (fixtures)
from tests.integration.images_fixtures import StartDaemon, daemon_config
from tests.rig.images import PushedImage, push_image
from tests.rig.registry import RegistryServer
from tests.rig.tlscerts import TestCerts, make_certs, make_certs_d

RegistryFactory = Callable[..., RegistryServer]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TestCerts:
    return make_certs(tmp_path_factory.mktemp("pki"))


def _tls_registry(registry_factory: RegistryFactory, certs: TestCerts, test_images: Path,
                  tmp_path: Path, *, client_ca: bool = False) -> tuple[RegistryServer, PushedImage]:
    server = registry_factory(tls=certs.server, client_ca=certs.ca if client_ca else None)
    assert server.url.startswith("https://")
    cert_dir = None
    if client_ca:  # skopeo needs the client certificate too
        cert_dir = make_certs_d(tmp_path / "push-certs", server.host, ca=certs.ca,
                                client=certs.client) / server.host
    pushed = push_image(server.host, "busybox", cache_dir=test_images, cert_dir=cert_dir)
    return server, pushed


def test_pull_verified_with_ca_from_certs_d(
    registry_factory: RegistryFactory, certs: TestCerts, test_images: Path,
    start_image_daemon: StartDaemon, tmp_path: Path,
) -> None:
    server, pushed = _tls_registry(registry_factory, certs, test_images, tmp_path)
    certs_d = make_certs_d(tmp_path / "certs.d", server.host, ca=certs.ca)
    d = start_image_daemon(daemon_config(certs_dirs=[str(certs_d)]))
    image_id = d.pull(pushed.ref)
    assert image_id.startswith("sha256:")
    listed = {i.id: i for i in d.list()}
    assert image_id in listed
    assert list(listed[image_id].repo_tags) == [pushed.ref]
    assert list(listed[image_id].repo_digests) == [pushed.digest_ref]


def test_unknown_ca_is_unavailable(
    registry_factory: RegistryFactory, certs: TestCerts, test_images: Path,
    start_image_daemon: StartDaemon, tmp_path: Path,
) -> None:
    _server, pushed = _tls_registry(registry_factory, certs, test_images, tmp_path)
    empty = tmp_path / "certs.d-empty"
    empty.mkdir()
    d = start_image_daemon(daemon_config(certs_dirs=[str(empty)]))
    err = d.pull_error(pushed.ref)
    assert err.code() == grpc.StatusCode.UNAVAILABLE, err.details()
    assert pushed.ref in err.details()
    assert "certificate" in err.details().lower() or "x509" in err.details(), err.details()
    assert d.list() == []


def test_insecure_registry_pulls_over_unverified_tls(
    registry_factory: RegistryFactory, certs: TestCerts, test_images: Path,
    start_image_daemon: StartDaemon, tmp_path: Path,
) -> None:
    server, pushed = _tls_registry(registry_factory, certs, test_images, tmp_path)
    empty = tmp_path / "certs.d-empty"
    empty.mkdir()
    d = start_image_daemon(daemon_config(insecure=[server.host], certs_dirs=[str(empty)]))
    image_id = d.pull(pushed.ref)
    assert image_id.startswith("sha256:")
    assert d.status(pushed.ref).image.id == image_id


def test_client_certificate_from_certs_d(
    registry_factory: RegistryFactory, certs: TestCerts, test_images: Path,
    start_image_daemon: StartDaemon, tmp_path: Path,
) -> None:
    server, pushed = _tls_registry(registry_factory, certs, test_images, tmp_path,
                                   client_ca=True)
    with_cert = make_certs_d(tmp_path / "certs.d-client", server.host, ca=certs.ca,
                             client=certs.client)
    ok = start_image_daemon(daemon_config(certs_dirs=[str(with_cert)]), name="with-cert")
    image_id = ok.pull(pushed.ref)
    assert [i.id for i in ok.list()] == [image_id]

    ca_only = make_certs_d(tmp_path / "certs.d-ca", server.host, ca=certs.ca)
    bad = start_image_daemon(daemon_config(certs_dirs=[str(ca_only)]), name="no-cert")
    err = bad.pull_error(pushed.ref)
    assert err.code() == grpc.StatusCode.UNAVAILABLE, err.details()
    assert pushed.ref in err.details()
    # the server's TLS alert (bad_certificate, or certificate_required under TLS 1.3)
    assert "certificate" in err.details().lower(), err.details()
    assert bad.list() == []
