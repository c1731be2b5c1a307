"""shim.oci.caps: default set, add/drop, ALL, ambient, privileged, non-root, host limits."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from shim.errors import InvalidArgument
from shim.oci.caps import ALL_CAPS, DEFAULT_CAPS, CapSets, compute, normalize, ordered

pytestmark = pytest.mark.unit

HOST = frozenset(c for c in ALL_CAPS if c != "CAP_SYS_RESOURCE")  # as on the CI machine


def run(
    add: Iterable[str] = (), drop: Iterable[str] = (), amb: Iterable[str] = (), *,
    privileged: bool = False, root: bool = True, host: Iterable[str] = HOST,
    default: Iterable[str] = (),
) -> CapSets:
    return compute(add, drop, amb, privileged=privileged, root=root, host=host, default=default)


def test_table_matches_kernel_numbers() -> None:
    assert len(ALL_CAPS) == 41
    assert ALL_CAPS[21] == "CAP_SYS_ADMIN" and ALL_CAPS[24] == "CAP_SYS_RESOURCE"
    assert ALL_CAPS[40] == "CAP_CHECKPOINT_RESTORE"


def test_normalize() -> None:
    assert normalize("chown") == "CAP_CHOWN"
    assert normalize("Cap_Net_Raw") == "CAP_NET_RAW"
    assert normalize(" CAP_SYS_ADMIN ") == "CAP_SYS_ADMIN"
    assert normalize("bogus") is None


def test_default_set_for_root() -> None:
    s = run()
    assert s.bounding == tuple(ordered(DEFAULT_CAPS))
    assert s.effective == s.permitted == s.bounding
    assert s.inheritable == () and s.ambient == ()


def test_configured_default_set() -> None:
    assert run(default=("kill", "CAP_CHOWN")).bounding == ("CAP_CHOWN", "CAP_KILL")


def test_add_and_drop_case_insensitive() -> None:
    s = run(add=["net_raw", "CAP_SYS_PTRACE"], drop=["Chown", "KILL"])
    assert "CAP_NET_RAW" in s.bounding and "CAP_SYS_PTRACE" in s.bounding
    assert "CAP_CHOWN" not in s.bounding and "CAP_KILL" not in s.bounding


def test_drop_wins_over_add() -> None:
    assert "CAP_NET_RAW" not in run(add=["NET_RAW"], drop=["NET_RAW"]).bounding


def test_add_all_then_drop() -> None:
    s = run(add=["ALL"], drop=["CAP_SYS_ADMIN"])
    assert set(s.bounding) == HOST - {"CAP_SYS_ADMIN"}


def test_drop_all_then_add() -> None:
    assert run(add=["NET_BIND_SERVICE"], drop=["all"]).bounding == ("CAP_NET_BIND_SERVICE",)


def test_unknown_capability_names_the_field() -> None:
    with pytest.raises(InvalidArgument, match=r"capabilities\.add_capabilities: unknown .*'FLY'"):
        run(add=["FLY"])
    with pytest.raises(InvalidArgument, match="drop_capabilities"):
        run(drop=["CAP_NOPE"])


def test_privileged_gets_every_host_capability() -> None:
    s = run(privileged=True, drop=["ALL"])
    assert set(s.bounding) == HOST and s.effective == s.bounding


def test_host_intersection() -> None:
    s = run(add=["SYS_RESOURCE", "SYS_ADMIN"])
    assert "CAP_SYS_RESOURCE" not in s.bounding and "CAP_SYS_ADMIN" in s.bounding
    s = run(host={"CAP_CHOWN", "KILL"})  # names with or without the prefix
    assert s.bounding == ("CAP_CHOWN", "CAP_KILL")


def test_empty_host_means_every_known_capability() -> None:
    assert set(run(privileged=True, host=()).bounding) == set(ALL_CAPS)


def test_non_root_gets_bounding_only() -> None:
    s = run(add=["NET_RAW"], root=False)
    assert "CAP_NET_RAW" in s.bounding
    assert s.effective == s.permitted == s.inheritable == s.ambient == ()


def test_ambient_for_non_root() -> None:
    s = run(amb=["NET_BIND_SERVICE", "SYS_RESOURCE"], root=False, drop=["ALL"])
    assert s.bounding == ("CAP_NET_BIND_SERVICE",)
    assert s.effective == s.permitted == s.inheritable == s.ambient == ("CAP_NET_BIND_SERVICE",)


def test_ambient_for_root() -> None:
    s = run(amb=["NET_ADMIN"])
    assert "CAP_NET_ADMIN" in s.bounding and "CAP_NET_ADMIN" in s.effective
    assert s.inheritable == s.ambient == ("CAP_NET_ADMIN",)
    with pytest.raises(InvalidArgument, match="add_ambient_capabilities"):
        run(amb=["BOGUS_CAP"])
