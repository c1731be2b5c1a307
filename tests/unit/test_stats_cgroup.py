"""cgroup v1/v2 parsing and reading, from sample file contents in a temporary tree."""

from __future__ import annotations

from pathlib import Path

from shim.stats import cgroup

V1_STAT = """cache 4096
rss 8192
inactive_file 4096
pgfault 10
pgmajfault 1
hierarchical_memory_limit 9223372036854771712
total_cache 1048576
total_rss 2097152
total_inactive_file 524288
total_active_file 524288
total_pgfault 1234
total_pgmajfault 5
"""

V2_STAT = """anon 3145728
file 2097152
inactive_file 1048576
active_file 1048576
pgfault 777
pgmajfault 7
"""


def write(d: Path, files: dict[str, str]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)


def test_parse_keyed_and_int() -> None:
    assert cgroup.parse_keyed("a 1\nb 2\nbad x\n\nc 3 4\n") == {"a": 1, "b": 2}
    assert cgroup.parse_int("42\n") == 42
    assert cgroup.parse_int("max\n") is None
    assert cgroup.parse_int("") is None


def test_working_set_never_negative() -> None:
    assert cgroup.working_set(10_000, 4_000) == 6_000
    assert cgroup.working_set(1_000, 4_000) == 0


def test_memory_v1_uses_hierarchical_totals() -> None:
    m = cgroup.memory_v1("4194304\n", V1_STAT, "9223372036854771712\n", None, None)
    assert m["memory_usage"] == 4194304
    assert m["working_set"] == 4194304 - 524288
    assert m["memory_limit"] is None  # unlimited
    assert (m["rss"], m["page_faults"], m["major_page_faults"]) == (2097152, 1234, 5)
    assert m["swap_usage"] is None


def test_memory_v1_limit_and_swap() -> None:
    m = cgroup.memory_v1("4194304", V1_STAT, "8388608", "5242880", "16777216")
    assert m["memory_limit"] == 8388608
    assert m["swap_usage"] == 5242880 - 4194304
    assert m["swap_limit"] == 16777216 - 8388608
    s = cgroup.CgroupSample(**m)  # type: ignore[arg-type]
    assert s.available_bytes == 8388608 - (4194304 - 524288)
    assert s.swap_available == (16777216 - 8388608) - (5242880 - 4194304)


def test_memory_v2() -> None:
    m = cgroup.memory_v2("6291456\n", V2_STAT, "max\n", "0\n", "max\n")
    assert m["working_set"] == 6291456 - 1048576
    assert m["memory_limit"] is None
    assert (m["rss"], m["page_faults"], m["major_page_faults"]) == (3145728, 777, 7)
    assert (m["swap_usage"], m["swap_limit"]) == (0, None)
    m = cgroup.memory_v2("6291456", V2_STAT, "10485760", None, None)
    assert m["memory_limit"] == 10485760
    assert m["swap_usage"] is None


def test_cpu_parsers() -> None:
    assert cgroup.cpu_v1("123456789\n") == 123456789
    assert cgroup.cpu_v2("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n") == 1_500_000
    assert cgroup.cpu_v2("nr_periods 0\n") is None


def test_read_v1_tree(tmp_path: Path) -> None:
    h = cgroup.Hierarchies(v1={"cpu": str(tmp_path / "cpu,cpuacct"),
                               "cpuacct": str(tmp_path / "cpu,cpuacct"),
                               "memory": str(tmp_path / "memory"),
                               "pids": str(tmp_path / "pids")},
                           v2=str(tmp_path / "unified"))
    write(tmp_path / "cpu,cpuacct/pods/c1", {"cpuacct.usage": "5000000000\n"})
    write(tmp_path / "memory/pods/c1", {"memory.usage_in_bytes": "4194304\n",
                                        "memory.stat": V1_STAT,
                                        "memory.limit_in_bytes": "9223372036854771712\n"})
    write(tmp_path / "pids/pods/c1", {"pids.current": "3\n"})
    s = cgroup.read("/pods/c1", h, 7)
    assert s.found and s.timestamp == 7
    assert s.cpu_usage_ns == 5_000_000_000
    assert s.working_set == 4194304 - 524288
    assert s.available_bytes == 0
    assert s.pids == 3
    gone = cgroup.read("/pods/c2", h, 7)
    assert not gone.found
    assert gone.cpu_usage_ns is None and gone.memory_usage is None


def test_read_v2_tree(tmp_path: Path) -> None:
    h = cgroup.Hierarchies(v1={}, v2=str(tmp_path))
    write(tmp_path / "pods/c1", {"cpu.stat": "usage_usec 2000\n", "memory.current": "6291456",
                                 "memory.stat": V2_STAT, "memory.max": "max",
                                 "memory.swap.current": "4096", "memory.swap.max": "max",
                                 "pids.current": "2"})
    s = cgroup.read("pods/c1", h, 1)
    assert s.cpu_usage_ns == 2_000_000
    assert s.memory_usage == 6291456 and s.rss == 3145728
    assert s.swap_usage == 4096 and s.swap_available == 0
    assert s.pids == 2


def test_hybrid_reads_v1_controllers_not_the_empty_v2_tree(tmp_path: Path) -> None:
    h = cgroup.Hierarchies(v1={"cpuacct": str(tmp_path / "cpuacct")}, v2=str(tmp_path / "u"))
    write(tmp_path / "cpuacct/x", {"cpuacct.usage": "10"})
    write(tmp_path / "u/x", {"cpu.stat": "usage_usec 99\n"})
    s = cgroup.read("x", h, 0)
    assert s.cpu_usage_ns == 10  # v1 wins for cpu
    assert s.memory_usage is None  # no memory controller anywhere: memory.current absent


def test_total_sums_found_samples() -> None:
    a = cgroup.CgroupSample(cpu_usage_ns=10, memory_usage=100, working_set=60, pids=1,
                            memory_limit=1000, found=True)
    b = cgroup.CgroupSample(cpu_usage_ns=5, memory_usage=50, working_set=40, pids=2,
                            found=True)
    gone = cgroup.CgroupSample(cpu_usage_ns=999, found=False)
    t = cgroup.total([a, b, gone], 3)
    assert (t.cpu_usage_ns, t.memory_usage, t.working_set, t.pids) == (15, 150, 100, 3)
    assert t.memory_limit is None and t.rss is None and t.found
    assert not cgroup.total([gone], 3).found


def test_host_hierarchies_are_found() -> None:
    h = cgroup.hierarchies()
    assert h.v1 or h.v2
