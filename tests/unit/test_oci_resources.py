"""shim.oci.resources: CRI resources -> OCI (and back, at the edge), devices, cgroups paths.
The resources are written as the CRI messages a client sends, typed by container_convert."""

from __future__ import annotations

from typing import Any

import pytest

from podsandbox.types import Mode, PodContext
from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.oci.resources import (
    MIN_MEMORY_LIMIT,
    cgroups_path,
    default_device_rules,
    devices,
)
from shim.oci.resources import resources_to_oci as _to_oci
from shim.oci.types import Device, RuntimeOptions
from shim.rpc.container_convert import resources, resources_from_oci

pytestmark = pytest.mark.unit


def resources_to_oci(res: pb.LinuxContainerResources, runtime: RuntimeOptions
                     ) -> dict[str, Any]:
    return _to_oci(resources(res), runtime)

V1 = RuntimeOptions()
V2 = RuntimeOptions(cgroup_v2=True)
MIB = 1024 * 1024


def pod(parent: str = "") -> PodContext:
    return PodContext("sb", Mode.POD, Mode.POD, Mode.POD, Mode.CONTAINER, {}, "h", "", "", "",
                      parent)


def full() -> pb.LinuxContainerResources:
    r = pb.LinuxContainerResources(
        cpu_period=100000, cpu_quota=50000, cpu_shares=512, cpuset_cpus="0-1,3",
        cpuset_mems="0", memory_limit_in_bytes=256 * MIB, memory_swap_limit_in_bytes=512 * MIB,
        oom_score_adj=300,
    )
    r.hugepage_limits.add(page_size="2MB", limit=4 * MIB)
    return r


def test_to_oci_full() -> None:
    assert resources_to_oci(full(), V1) == {
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1,3", "mems": "0"},
        "memory": {"limit": 256 * MIB, "swap": 512 * MIB},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MIB}],
    }


def test_empty_resources_give_empty_dict() -> None:
    assert resources_to_oci(pb.LinuxContainerResources(), V1) == {}


def test_round_trip() -> None:
    r = full()
    r.unified["memory.high"] = "1000000"
    back = resources_from_oci(resources_to_oci(r, V2), oom_score_adj=300)
    assert back == r


def test_swap_only_with_memory() -> None:
    r = pb.LinuxContainerResources(memory_swap_limit_in_bytes=512 * MIB)
    assert "memory" not in resources_to_oci(r, V1)
    r = pb.LinuxContainerResources(memory_limit_in_bytes=64 * MIB, memory_swap_limit_in_bytes=-1)
    assert resources_to_oci(r, V1)["memory"] == {"limit": 64 * MIB, "swap": -1}


def test_swap_below_memory_rejected() -> None:
    r = pb.LinuxContainerResources(memory_limit_in_bytes=64 * MIB,
                                   memory_swap_limit_in_bytes=32 * MIB)
    with pytest.raises(InvalidArgument, match="memory_swap_limit_in_bytes"):
        resources_to_oci(r, V1)


def test_memory_minimum() -> None:
    r = pb.LinuxContainerResources(memory_limit_in_bytes=4 * MIB)
    with pytest.raises(InvalidArgument) as e:
        resources_to_oci(r, V1)
    assert "memory_limit_in_bytes" in e.value.message and "4 MiB" in e.value.message
    assert "12 MiB" in e.value.message
    r.memory_limit_in_bytes = MIN_MEMORY_LIMIT
    assert resources_to_oci(r, V1)["memory"] == {"limit": MIN_MEMORY_LIMIT}


def test_bad_cpuset_and_page_size() -> None:
    with pytest.raises(InvalidArgument, match="cpuset_cpus"):
        resources_to_oci(pb.LinuxContainerResources(cpuset_cpus="0-a"), V1)
    r = pb.LinuxContainerResources()
    r.hugepage_limits.add(page_size="2M", limit=1)
    with pytest.raises(InvalidArgument, match=r"hugepage_limits\[0\].page_size"):
        resources_to_oci(r, V1)


def test_unified_on_v1_refused_and_on_v2_kept() -> None:
    r = pb.LinuxContainerResources()
    r.unified["memory.high"] = "100"
    with pytest.raises(InvalidArgument, match=r"unified\['memory.high'\].*cgroup v1"):
        resources_to_oci(r, V1)
    assert resources_to_oci(r, V2) == {"unified": {"memory.high": "100"}}
    r.unified["../x"] = "1"
    with pytest.raises(InvalidArgument, match="not a cgroup file"):
        resources_to_oci(r, V2)


def test_pids_limit() -> None:
    r = pb.LinuxContainerResources()
    assert resources_to_oci(r, RuntimeOptions(pids_limit=1024)) == {"pids": {"limit": 1024}}
    assert "pids" not in resources_to_oci(r, RuntimeOptions(pids_limit=-1))


def test_cgroups_path_cgroupfs() -> None:
    assert cgroups_path(pod(), "abc", V1) == "/tether/tether-abc"
    assert cgroups_path(pod("/kubepods/burstable/pod1"), "abc", V1) == (
        "/kubepods/burstable/pod1/tether-abc"
    )
    with pytest.raises(InvalidArgument, match="cgroup_parent"):
        cgroups_path(pod("relative"), "abc", V1)
    with pytest.raises(InvalidArgument, match="cgroup_parent"):
        cgroups_path(pod("/a/../b"), "abc", V1)


def test_cgroups_path_systemd() -> None:
    # slices expanded by Tether, a scope per container: a path, not runc's slice:prefix:name
    sd = RuntimeOptions(cgroup_driver="systemd")
    assert cgroups_path(pod(), "abc", sd) == "/tether.slice/tether-abc.scope"
    assert cgroups_path(pod("kubepods-besteffort-pod1.slice"), "abc", sd) == (
        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/"
        "tether-abc.scope"
    )
    assert cgroups_path(pod("-.slice"), "abc", sd) == "/tether-abc.scope"
    with pytest.raises(InvalidArgument, match="slice"):
        cgroups_path(pod("/kubepods"), "abc", sd)
    with pytest.raises(InvalidArgument, match="slice"):
        cgroups_path(pod("kubepods.scope"), "abc", sd)
    with pytest.raises(InvalidArgument, match="driver"):
        cgroups_path(pod(), "abc", RuntimeOptions(cgroup_driver="other"))


INFO = {"/dev/fuse": ("c", 10, 229, 0o20666), "/dev/loop0": ("b", 7, 0, 0o60660)}


def test_devices_requested() -> None:
    req = [Device(host_path="/dev/fuse", container_path="/dev/fuse", permissions="rw"),
           Device(host_path="/dev/loop0", container_path="/dev/xvda", permissions="")]
    nodes, rules = devices(req, INFO, privileged=False)
    assert nodes == [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666,
         "uid": 0, "gid": 0},
        {"path": "/dev/xvda", "type": "b", "major": 7, "minor": 0, "fileMode": 0o660,
         "uid": 0, "gid": 0},
    ]
    assert rules == [
        {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"},
        {"allow": True, "type": "b", "major": 7, "minor": 0, "access": "rwm"},
    ]


def test_devices_errors() -> None:
    with pytest.raises(InvalidArgument, match=r"devices\[0\].host_path '/dev/nope'"):
        devices([Device(host_path="/dev/nope", container_path="/dev/nope")], INFO, False)
    with pytest.raises(InvalidArgument, match="permissions"):
        devices([Device(host_path="/dev/fuse", container_path="/dev/fuse",
                           permissions="rwx")], INFO, False)
    with pytest.raises(InvalidArgument, match="absolute"):
        devices([Device(host_path="/dev/fuse", container_path="fuse")], INFO, False)


def test_devices_privileged_gets_every_host_device() -> None:
    nodes, rules = devices([], INFO, privileged=True)
    assert [n["path"] for n in nodes] == ["/dev/fuse", "/dev/loop0"]
    assert rules == []
    assert default_device_rules(True) == [{"allow": True, "access": "rwm"}]


def test_default_device_rules() -> None:
    rules = default_device_rules(False)
    assert rules[0] == {"allow": False, "access": "rwm"}
    allowed = {(r.get("type"), r.get("major"), r.get("minor")) for r in rules[1:]}
    for dev in ((1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 2)):
        assert ("c", *dev) in allowed
    assert ("c", 136, None) in allowed


def test_kernel_bounds_refused_at_the_edge() -> None:
    from shim.oci.resources import parse_id_list

    opts = RuntimeOptions(node_cpus=2, node_mems=1)
    for res, field in (
        (pb.LinuxContainerResources(cpu_period=1), "cpu_period"),
        (pb.LinuxContainerResources(cpu_period=2_000_000), "cpu_period"),
        (pb.LinuxContainerResources(cpu_period=100000, cpu_quota=1), "cpu_quota"),
        (pb.LinuxContainerResources(cpuset_cpus="0-99999"), "cpuset_cpus"),
        (pb.LinuxContainerResources(cpuset_cpus="1-0"), "cpuset_cpus"),
        (pb.LinuxContainerResources(cpuset_mems="1"), "cpuset_mems"),
        (pb.LinuxContainerResources(cpuset_cpus="0,\n1"), "cpuset_cpus"),
    ):
        with pytest.raises(InvalidArgument, match=field):
            resources_to_oci(res, opts)
    ok = resources_to_oci(pb.LinuxContainerResources(cpu_period=100000, cpu_quota=-1,
                                                     cpuset_cpus="0-1", cpuset_mems="0"), opts)
    assert ok["cpu"] == {"quota": -1, "period": 100000, "cpus": "0-1", "mems": "0"}
    assert parse_id_list("0-3,6\n") == 7 and parse_id_list("0") == 1 and parse_id_list("") == 0
