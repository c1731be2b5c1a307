"""Fixtures shared by the conformance (critest) and end-to-end (crictl) stages.

critest_registry   a docker-registry in the test netns holding tests/images/critest.sh's
                   stand-ins under their public repository paths (session scope).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.rig.node import build_critest_images, push_critest_images
from tests.rig.registry import RegistryServer


@pytest.fixture(scope="session")
def critest_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    layout = build_critest_images()
    with RegistryServer(tmp_path_factory.mktemp("critest-registry"), port=0) as server:
        push_critest_images(layout, server.host)
        yield server
