"""Suite-wide pytest setup.

* Tests under tests/unit are marked ``unit``, tests under tests/integration ``integration``;
  tests/conformance (critest) and tests/e2e (crictl) are marked ``integration`` too, and
  ``conformance`` / ``e2e`` (by path; the markers are declared in pyproject.toml).
* Integration tests FAIL (not skip) unless the run is root and inside a private network
  namespace: run them with ``make test`` / scripts/test.sh, which use ``unshare --net``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.rig.registry import RegistryServer

TESTS_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            top = Path(item.path).resolve().relative_to(TESTS_DIR).parts[0]
        except (ValueError, IndexError):
            continue
        if top == "unit":
            item.add_marker(pytest.mark.unit)
        elif top in ("integration", "conformance", "e2e"):
            # the real-client stages need what integration tests need (root, private netns)
            item.add_marker(pytest.mark.integration)
            if top != "integration":
                item.add_marker(getattr(pytest.mark, top))


@cache
def _integration_env_problem() -> str | None:
    from tests.rig.netns import NotInPrivateNetns, assert_private_netns, loopback_is_up

    if os.geteuid() != 0:
        return "integration tests must run as root (they start runtimes, mounts, netns)"
    try:
        assert_private_netns()
    except NotInPrivateNetns as e:
        return f"integration tests must run in a private network namespace: {e}"
    if not loopback_is_up():
        return "loopback is down in the test network namespace (`ip link set lo up`)"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("integration") is not None:
        problem = _integration_env_problem()
        if problem:
            pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="session")
def critest_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A docker-registry in the test netns holding tests/images/critest.sh's stand-ins under
    their public repository paths (critest's images; crictl's tests use them too)."""
    from tests.rig.node import build_critest_images, push_critest_images
    from tests.rig.registry import RegistryServer as Server

    layout = build_critest_images()
    with Server(tmp_path_factory.mktemp("critest-registry"), port=0) as server:
        push_critest_images(layout, server.host)
        yield server
