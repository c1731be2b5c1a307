"""Container resources and cgroups through the CRI, with runc and crun: the limits a container
is created with and updated to, read in its cgroup files on the node and from inside (where
/sys/fs/cgroup is its own cgroup, read-only), refused settings, and the OOM killer."""

# The imported `ctr` fixture is a parameter name of every test and helper here.
# ruff: noqa: F811

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from podsandbox import cgroups
from shim.cri import api_pb2 as pb
from tests.integration.test_containers import (  # noqa: F401
    HANDLERS,
    Ctr,
    ctr,
    log_lines,
    start_ctr,
)
from tests.integration.test_sandbox import stop_env
from tests.rig.images import ImageRegistry

MiB = 1024 * 1024
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def controllers() -> dict[str, str]:
    return dict(cgroups.layout().v1)


V1 = bool(cgroups.layout().v1) and "memory" in controllers()
pytestmark = pytest.mark.skipif(not V1, reason="these checks read cgroup v1 controller files "
                                "(this suite runs on a hybrid/v1 node)")


class Cgroup:
    """The container's cgroup on the node: ``linux.cgroupsPath`` of its runtime spec (from
    ContainerStatus verbose info) under each v1 controller's mount point."""

    def __init__(self, ctr: Ctr, cid: str) -> None:
        info = json.loads(ctr.status(cid, verbose=True).info["info"])
        self.path = info["runtimeSpec"]["linux"]["cgroupsPath"]
        assert self.path.startswith("/") and cid in self.path

    def dir(self, controller: str) -> Path:
        return Path(controllers()[controller]) / self.path.lstrip("/")

    def read(self, controller: str, name: str) -> str:
        return (self.dir(controller) / name).read_text().strip()


def inside(ctr: Ctr, cid: str, controller: str, name: str) -> str:
    return ctr.out(cid, "cat", f"/sys/fs/cgroup/{controller}/{name}")


def has_hugetlb_2mb() -> bool:
    return "hugetlb" in controllers() and Path("/sys/kernel/mm/hugepages/hugepages-2048kB").is_dir()


def metric(ctr: Ctr, name: str) -> float:
    url = f"http://127.0.0.1:{ctr.env.daemon.metrics_port}/metrics"
    with _NO_PROXY.open(url, timeout=10) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}(?:{{.*}})? (\S+)$", line)
        if m:
            total += float(m.group(1))
    return total


def resources(**kw: object) -> pb.LinuxContainerConfig:
    return pb.LinuxContainerConfig(resources=pb.LinuxContainerResources(**kw))


def create_error(ctr: Ctr, sid: str, pcfg: pb.PodSandboxConfig, name: str,
                 **kw: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as e:
        ctr.create(sid, pcfg, name, ["true"], linux=resources(**kw))
    return e.value


# --- limits at create -------------------------------------------------------------------------


def test_limits_in_the_cgroup_files(ctr: Ctr) -> None:
    sid, pcfg = ctr.pod("limits")
    kw: dict[str, object] = dict(
        cpu_period=100000, cpu_quota=50000, cpu_shares=512, cpuset_cpus="0", cpuset_mems="0",
        memory_limit_in_bytes=64 * MiB)
    if has_hugetlb_2mb():
        kw["hugepage_limits"] = [pb.HugepageLimit(page_size="2MB", limit=4 * MiB)]
    cid = ctr.run(sid, pcfg, "limited", ["sleep", "600"], linux=resources(**kw))
    cg = Cgroup(ctr, cid)
    want = {
        ("cpu", "cpu.cfs_period_us"): "100000",
        ("cpu", "cpu.cfs_quota_us"): "50000",
        ("cpu", "cpu.shares"): "512",
        ("cpuset", "cpuset.cpus"): "0",
        ("cpuset", "cpuset.mems"): "0",
        ("memory", "memory.limit_in_bytes"): str(64 * MiB),
    }
    if has_hugetlb_2mb():
        want[("hugetlb", "hugetlb.2MB.limit_in_bytes")] = str(4 * MiB)
    for (controller, name), value in want.items():
        assert cg.read(controller, name) == value, (controller, name)
        # Inside, /sys/fs/cgroup/<controller> is the container's own cgroup.
        assert inside(ctr, cid, controller, name) == value, (controller, name)
    # The container's processes are in it, and it cannot change its own limits.
    pid = json.loads(ctr.status(cid, verbose=True).info["info"])["pid"]
    assert str(pid) in cg.read("memory", "cgroup.procs").split()
    r = ctr.exec(cid, "sh", "-c", "echo 999999999 > /sys/fs/cgroup/memory/memory.limit_in_bytes")
    assert r.exit_code != 0 and b"Read-only file system" in r.stderr
    # ContainerStatus reports what was asked.
    st = ctr.status(cid).status.resources.linux
    assert (st.cpu_period, st.cpu_quota, st.cpu_shares) == (100000, 50000, 512)
    assert (st.cpuset_cpus, st.cpuset_mems, st.memory_limit_in_bytes) == ("0", "0", 64 * MiB)
    if not has_hugetlb_2mb():
        pytest.skip("hugetlb controller or 2MB huge pages missing: hugepage limits not checked")
    assert [(h.page_size, h.limit) for h in st.hugepage_limits] == [("2MB", 4 * MiB)]


def test_refused_limits(ctr: Ctr) -> None:
    sid, pcfg = ctr.pod("refused")
    err = create_error(ctr, sid, pcfg, "unified", unified={"memory.high": "100000000"})
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unified" in (err.details() or "") and "cgroup v1" in (err.details() or "")
    err = create_error(ctr, sid, pcfg, "tiny", memory_limit_in_bytes=4 * MiB)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = err.details() or ""
    assert "memory_limit_in_bytes" in details and "minimum" in details and "12 MiB" in details
    err = create_error(ctr, sid, pcfg, "cpuset", cpuset_cpus="zero")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "cpuset_cpus" in (err.details() or "")
    err = create_error(ctr, sid, pcfg, "hp", hugepage_limits=[pb.HugepageLimit(page_size="2M",
                                                                                 limit=MiB)])
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_size" in (err.details() or "")
    # Nothing of the refused ones is left.
    assert ctr.rt.ListContainers(pb.ListContainersRequest()).containers == []


@pytest.fixture(params=HANDLERS)
def ctr_pids(request: pytest.FixtureRequest, tmp_path: Path,
             registry: ImageRegistry) -> Iterator[Ctr]:
    """Like ``ctr``, with ``[runtime] pids_limit = 32`` in a drop-in of the daemon's config
    (its --config-dir is <base>/t/tether.d)."""
    dropins = tmp_path / "t" / "tether.d"
    dropins.mkdir(parents=True)
    (dropins / "50-pids.toml").write_text("[runtime]\npids_limit = 32\n")
    c = start_ctr(tmp_path, registry, request.param)
    yield c
    stop_env(c.env)


def test_pids_limit_from_the_config(ctr_pids: Ctr) -> None:
    ctr = ctr_pids
    sid, pcfg = ctr.pod("pids")
    cid = ctr.run(sid, pcfg, "main", ["sleep", "600"])
    cg = Cgroup(ctr, cid)
    assert cg.read("pids", "pids.max") == "32"
    assert inside(ctr, cid, "pids", "pids.max") == "32"
    # Forking past the limit fails inside (ExecSync'd processes join the container's cgroup).
    r = ctr.exec(cid, "sh", "-c", "i=0; while [ $i -lt 60 ]; do "
                 "sleep 30 >/dev/null 2>&1 & i=$((i+1)); done")
    assert r.exit_code != 0 and b"can't fork" in r.stderr, r
    assert 30 <= int(cg.read("pids", "pids.current")) <= 32  # the exec'd shell is gone


@pytest.fixture(params=HANDLERS)
def ctr_systemd(request: pytest.FixtureRequest, tmp_path: Path,
                registry: ImageRegistry) -> Iterator[Ctr]:
    """Like ``ctr``, with ``[runtime] cgroup_driver = "systemd"`` (and a default parent slice
    of its own). systemd need not run: Tether makes the slices' directories itself."""
    c = start_ctr(tmp_path, registry, request.param, driver="systemd")
    yield c
    stop_env(c.env)


def test_systemd_driver_puts_containers_beside_the_pause_holder(ctr_systemd: Ctr) -> None:
    ctr = ctr_systemd
    slice_ = f"{ctr.env.cgroup_parent.removesuffix('.slice')}-pod1.slice"
    expanded = f"{ctr.env.cgroup_parent}/{slice_}"
    sid, pcfg = ctr.pod("sd", cgroup_parent=slice_)
    _, info = ctr.env.status(sid)
    assert info["cgroup"] == f"{expanded}/tether-{sid}.scope"
    cid = ctr.run(sid, pcfg, "main", ["sleep", "600"], linux=resources(
        memory_limit_in_bytes=64 * MiB))
    cg = Cgroup(ctr, cid)
    assert cg.path == f"/{expanded}/tether-{cid}.scope"
    pid = json.loads(ctr.status(cid, verbose=True).info["info"])["pid"]
    assert f"memory:{cg.path}\n" in Path(f"/proc/{pid}/cgroup").read_text()
    assert cg.read("memory", "memory.limit_in_bytes") == str(64 * MiB)
    update(ctr, cid, memory_limit_in_bytes=128 * MiB)
    assert cg.read("memory", "memory.limit_in_bytes") == str(128 * MiB)
    ctr.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid), timeout=60)
    # the pod's slices went with it (Tether made them); the default parent stays empty
    for point in cgroups.layout().mountpoints():
        assert not (Path(point) / expanded).exists()


# --- UpdateContainerResources -----------------------------------------------------------------


def update(ctr: Ctr, cid: str, **kw: object) -> None:
    ctr.rt.UpdateContainerResources(pb.UpdateContainerResourcesRequest(
        container_id=cid, linux=pb.LinuxContainerResources(**kw)), timeout=60)


def wait_log(ctr: Ctr, cid: str, word: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = ctr.status(cid).status.log_path
        if Path(path).exists() and any(t == word for _, _, t in log_lines(path)):
            return
        time.sleep(0.1)
    raise AssertionError(f"{word!r} never logged by {cid}")


def test_update_resources_of_a_running_container(ctr: Ctr) -> None:
    sid, pcfg = ctr.pod("update")
    cid = ctr.run(sid, pcfg, "u", ["sleep", "600"], linux=resources(
        cpu_period=100000, cpu_quota=50000, cpu_shares=512, memory_limit_in_bytes=64 * MiB))
    cg = Cgroup(ctr, cid)
    update(ctr, cid, cpu_period=100000, cpu_quota=20000, cpu_shares=256,
           memory_limit_in_bytes=128 * MiB)
    for controller, name, value in (("cpu", "cpu.cfs_quota_us", "20000"),
                                    ("cpu", "cpu.cfs_period_us", "100000"),
                                    ("cpu", "cpu.shares", "256"),
                                    ("memory", "memory.limit_in_bytes", str(128 * MiB))):
        assert cg.read(controller, name) == value, name
        assert inside(ctr, cid, controller, name) == value, name
    st = ctr.status(cid).status.resources.linux
    assert (st.cpu_quota, st.cpu_period, st.cpu_shares, st.memory_limit_in_bytes) == \
        (20000, 100000, 256, 128 * MiB)
    # Lower again, still above what it uses.
    update(ctr, cid, cpu_period=100000, cpu_quota=10000, cpu_shares=256,
           memory_limit_in_bytes=32 * MiB)
    assert cg.read("memory", "memory.limit_in_bytes") == str(32 * MiB)
    assert cg.read("cpu", "cpu.cfs_quota_us") == "10000"
    assert ctr.status(cid).status.resources.linux.memory_limit_in_bytes == 32 * MiB
    # Bad values are refused before the runtime is asked.
    with pytest.raises(grpc.RpcError) as e:
        update(ctr, cid, memory_limit_in_bytes=MiB)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as e:
        update(ctr, cid, unified={"memory.high": "1"})
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert cg.read("memory", "memory.limit_in_bytes") == str(32 * MiB)


def test_update_before_start_applies_at_start(ctr: Ctr) -> None:
    sid, pcfg = ctr.pod("early")
    cid = ctr.create(sid, pcfg, "u", ["sleep", "600"], linux=resources(
        cpu_period=100000, cpu_quota=50000, memory_limit_in_bytes=64 * MiB))
    update(ctr, cid, cpu_period=100000, cpu_quota=30000, memory_limit_in_bytes=96 * MiB)
    ctr.rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=60)
    cg = Cgroup(ctr, cid)
    assert cg.read("memory", "memory.limit_in_bytes") == str(96 * MiB)
    assert cg.read("cpu", "cpu.cfs_quota_us") == "30000"
    st = ctr.status(cid, verbose=True)
    assert st.status.resources.linux.memory_limit_in_bytes == 96 * MiB
    spec = json.loads(st.info["info"])["runtimeSpec"]["linux"]["resources"]
    assert spec["memory"]["limit"] == 96 * MiB and spec["devices"]  # device rules kept


def test_update_memory_below_usage_is_refused(ctr: Ctr) -> None:
    sid, pcfg = ctr.pod("below")
    # ~48 MiB held in a shell variable (anonymous memory: not reclaimable without swap); the
    # shell stays (a last command would be exec'd in its place, freeing it).
    script = "x=$(head -c 48m /dev/zero | tr '\\0' a); echo ready; sleep 600; echo ${#x}"
    cid = ctr.run(sid, pcfg, "hog", ["sh", "-c", script],
                  linux=resources(memory_limit_in_bytes=256 * MiB))
    wait_log(ctr, cid, "ready")
    cg = Cgroup(ctr, cid)
    assert int(cg.read("memory", "memory.usage_in_bytes")) > 40 * MiB
    with pytest.raises(grpc.RpcError) as e:
        update(ctr, cid, memory_limit_in_bytes=16 * MiB)
    assert e.value.code() in (grpc.StatusCode.FAILED_PRECONDITION,
                              grpc.StatusCode.INVALID_ARGUMENT)
    details = e.value.details() or ""
    assert "memory" in details and "usage" in details, details
    # Nothing changed: still running, same limit on the node and in the status.
    st = ctr.status(cid).status
    assert st.state == pb.CONTAINER_RUNNING
    assert st.resources.linux.memory_limit_in_bytes == 256 * MiB
    assert cg.read("memory", "memory.limit_in_bytes") == str(256 * MiB)


# --- OOM --------------------------------------------------------------------------------------


def test_oom_killed(ctr: Ctr) -> None:
    before = metric(ctr, "tether_containers_oom_total")
    sid, pcfg = ctr.pod("oom")
    # The shell keeps all 64 MiB in a variable: far over the 16 MiB limit.
    cid = ctr.run(sid, pcfg, "hog", ["sh", "-c", "x=$(head -c 64m /dev/zero | tr '\\0' a)"],
                  linux=resources(memory_limit_in_bytes=16 * MiB))
    st = ctr.wait_exit(cid, timeout=60)
    assert (st.state, st.exit_code, st.reason) == (pb.CONTAINER_EXITED, 137, "OOMKilled")
    # The kernel's own count, in the cgroup that outlives the process until RemoveContainer.
    oom_control = Cgroup(ctr, cid).read("memory", "memory.oom_control").splitlines()
    # one kill or more: sh, head and tr share the cgroup, and under load the killer may
    # take one of the pipeline first and the shell after
    kills = next(int(line.split()[1]) for line in oom_control if line.startswith("oom_kill "))
    assert kills >= 1, oom_control
    assert metric(ctr, "tether_containers_oom_total") == before + 1
    # A container killed with SIGKILL by StopContainer is not an OOM kill.
    k = ctr.run(sid, pcfg, "killed", ["sleep", "600"],
                linux=resources(memory_limit_in_bytes=16 * MiB))
    ctr.rt.StopContainer(pb.StopContainerRequest(container_id=k, timeout=0))
    st = ctr.status(k).status
    assert (st.exit_code, st.reason) == (137, "Error")
    assert metric(ctr, "tether_containers_oom_total") == before + 1
