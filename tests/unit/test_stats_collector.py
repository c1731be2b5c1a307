"""Stats samples from targets, with fake cgroup trees and a real writable layer dir."""

from __future__ import annotations

from pathlib import Path

from shim.stats import cgroup
from shim.stats.collector import Collector, cgroup_relpath, shared_parents
from shim.stats.layer import LayerCache
from shim.stats.samples import ContainerTarget, PodTarget


def _tree(root: Path, rel: str, usage_ns: int, mem: int, inactive: int, pids: int) -> None:
    for ctrl, files in {
        "cpuacct": {"cpuacct.usage": str(usage_ns)},
        "memory": {"memory.usage_in_bytes": str(mem),
                   "memory.stat": f"total_inactive_file {inactive}\ntotal_rss 100\n",
                   "memory.limit_in_bytes": "1048576"},
        "pids": {"pids.current": str(pids)},
    }.items():
        d = root / ctrl / rel
        d.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (d / name).write_text(text)


def _hier(root: Path) -> cgroup.Hierarchies:
    return cgroup.Hierarchies(v1={c: str(root / c) for c in ("cpuacct", "memory", "pids")})


def _ctr(cid: str, upper: str, running: bool = True) -> ContainerTarget:
    return ContainerTarget(id=cid, sandbox_id="pod1", name=f"n-{cid}", attempt=1,
                           labels={"a": "b"}, annotations={"x": "y"}, running=running,
                           cgroup=f"kube/pod1/tether-{cid}", upper=upper)


def test_cgroup_relpath() -> None:
    assert cgroup_relpath("/tether/tether-abc") == "tether/tether-abc"
    assert cgroup_relpath("kubepods-pod1.slice:tether:abc") == \
        "kubepods.slice/kubepods-pod1.slice/tether-abc.scope"


def test_shared_parents() -> None:
    shared = shared_parents(["kube/pod1", "kube/pod2", "tether", "dup", "dup"], "tether")
    assert shared == {"", "tether", "dup"}


def test_container_stats(tmp_path: Path) -> None:
    _tree(tmp_path / "cg", "kube/pod1/tether-c1", 2_000_000_000, 600_000, 100_000, 2)
    upper = tmp_path / "c1" / "upper"
    upper.mkdir(parents=True)
    (upper / "f").write_bytes(b"x" * 100_000)
    c = Collector("/var/lib/tether/containers", _hier(tmp_path / "cg"))
    st = c.container_stats(_ctr("c1", str(upper)))
    assert st.target.id == "c1" and st.target.name == "n-c1"
    assert st.target.labels == {"a": "b"}
    assert st.cpu is not None and st.memory is not None and st.writable_layer is not None
    assert st.cpu.usage_core_ns == 2_000_000_000
    assert st.cpu.usage_nano_cores == 0  # no rate from one sample
    assert st.memory.working_set_bytes == 500_000
    assert st.memory.available_bytes == 1048576 - 500_000
    assert st.memory.rss_bytes == 100
    assert st.memory.page_faults is None  # no memory.stat line for it
    assert st.writable_layer.used_bytes >= 100_000
    assert st.writable_layer.inodes_used == 2
    assert st.writable_layer.mountpoint == "/var/lib/tether/containers"
    assert st.swap is None


def test_exited_container_has_no_cgroup_stats(tmp_path: Path) -> None:
    c = Collector("/m", _hier(tmp_path))
    st = c.container_stats(_ctr("c9", "", running=False))
    assert st.cpu is None and st.memory is None and st.writable_layer is None


def test_layer_walk_is_cached(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    upper.mkdir()
    cache = LayerCache(ttl=60)
    first = cache.usage("c", str(upper)).used_bytes
    (upper / "big").write_bytes(b"x" * 200_000)
    assert cache.usage("c", str(upper)).used_bytes == first
    cache.forget_except(set())
    assert cache.usage("c", str(upper)).used_bytes >= first + 200_000


def test_pod_stats_from_own_parent_and_from_a_sum(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    _tree(root, "kube/pod1", 9_000, 5_000, 1_000, 4)
    _tree(root, "kube/pod1/tether-pod1", 1_000, 1_000, 0, 1)
    _tree(root, "kube/pod1/tether-c1", 2_000, 2_000, 500, 2)
    c = Collector("/m", _hier(root))
    pod = PodTarget(id="pod1", name="p", uid="u", namespace="ns", attempt=0, labels={},
                    annotations={}, cgroup="kube/pod1/tether-pod1", parent="kube/pod1",
                    netns=None, containers=[_ctr("c1", ""), _ctr("c2", "", running=False)])
    st = c.pod_stats(pod, shared_parents(["kube/pod1"], "tether"))
    assert st.cpu is not None and st.memory is not None and st.processes is not None
    assert st.target.uid == "u"
    assert st.cpu.usage_core_ns == 9_000
    assert st.memory.working_set_bytes == 4_000
    assert st.processes.count == 4
    assert [x.target.id for x in st.containers] == ["c1"]
    assert st.network is None
    # The same pod under a parent other pods share: its own cgroups are summed.
    st = c.pod_stats(pod, {"", "kube/pod1"})
    assert st.cpu is not None and st.memory is not None and st.processes is not None
    assert st.cpu.usage_core_ns == 3_000
    assert st.memory.usage_bytes == 3_000
    assert st.memory.working_set_bytes == 2_500
    assert st.processes.count == 3
