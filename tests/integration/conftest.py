"""Fixtures for integration tests.

Registry and images (session scope):
    test_images        Path of the OCI layouts built by tests/images/build.sh (one per image:
                       busybox, web, layers, user, multiarch; tag "latest").
    registry           tests.rig.images.ImageRegistry: a docker-registry on 127.0.0.1
                       (port 5000 when free) in the test netns, all test images pushed.
                       .host "127.0.0.1:5000", .url, .ref(name), .digest(name),
                       .digest_ref(name), .images[name] (PushedImage), .server.
Per test:
    registry_factory   start extra registries: registry_factory(auth=("u", "p")) ->
                       tests.rig.registry.RegistryServer (stopped after the test);
                       tls=(cert, key) for https, client_ca=ca to demand client certs
                       (tests.rig.tlscerts makes them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.rig.images import ImageRegistry, build_images, push_images
from tests.rig.registry import RegistryServer

# ---------------------------------------------------------------- registry and images


@pytest.fixture(scope="session")
def test_images() -> Path:
    return build_images()


@pytest.fixture(scope="session")
def registry(
    test_images: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ImageRegistry]:
    with RegistryServer(tmp_path_factory.mktemp("registry")) as server:
        images = push_images(server.host, cache_dir=test_images)
        yield ImageRegistry(server=server, images=images)


@pytest.fixture
def registry_factory(tmp_path: Path) -> Iterator[Callable[..., RegistryServer]]:
    started: list[RegistryServer] = []

    def make(*, auth: tuple[str, str] | None = None, port: int | None = 0,
             tls: tuple[Path, Path] | None = None,
             client_ca: Path | None = None) -> RegistryServer:
        server = RegistryServer(tmp_path / f"registry-{len(started)}", auth=auth, port=port,
                                tls=tls, client_ca=client_ca)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()
