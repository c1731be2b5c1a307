"""bench.procs: process snapshots and PSS accounting on a fake /proc tree."""

from __future__ import annotations

import os
from pathlib import Path

from bench import procs

HOST_NS = "net:[4026531840]"
DAEMON_NS = "net:[4026532100]"
POD1_NS = "net:[4026532201]"
POD2_NS = "net:[4026532202]"
OTHER_NS = "net:[4026539999]"  # somebody else's test netns


def fake_proc(
    root: Path,
    pid: int,
    *,
    ppid: int = 1,
    start: int = 1000,
    comm: str = "proc",
    cmdline: str = "",
    netns: str = HOST_NS,
    cgroup: str = "0::/\n",
    pss: int | None = 100,
    rss: int = 200,
) -> None:
    d = root / str(pid)
    (d / "ns").mkdir(parents=True, exist_ok=True)
    # 52 fields; ppid is field 4, starttime field 22
    rest = ["S", str(ppid)] + ["0"] * 17 + [str(start)] + ["0"] * 30
    (d / "stat").write_text(f"{pid} ({comm}) {' '.join(rest)}\n")
    (d / "cmdline").write_bytes((cmdline or comm).replace(" ", "\0").encode() + b"\0")
    link = d / "ns" / "net"
    if link.is_symlink():
        link.unlink()
    os.symlink(netns, link)
    (d / "cgroup").write_text(cgroup)
    if pss is not None:
        (d / "smaps_rollup").write_text(
            "00400000-7ffff000 ---p 00000000 00:00 0   [rollup]\n"
            f"Rss:             {rss} kB\n"
            f"Pss:             {pss} kB\n"
            "Pss_Anon:           10 kB\n"
            "Shared_Clean:       50 kB\n"
        )


def test_parse_stat_with_odd_comm() -> None:
    rest = ["R", "42"] + ["0"] * 17 + ["777"] + ["0"] * 30
    comm, ppid, start = procs._parse_stat(f"9 (a (b) c) {' '.join(rest)}")
    assert (comm, ppid, start) == ("a (b) c", 42, 777)


def test_read_memory(tmp_path: Path) -> None:
    fake_proc(tmp_path, 10, pss=1234, rss=5678)
    mem = procs.read_memory(10, tmp_path)
    assert mem == procs.Memory(pss_kb=1234, rss_kb=5678)
    assert procs.read_memory(11, tmp_path) is None


def test_snapshot_reads_processes(tmp_path: Path) -> None:
    fake_proc(tmp_path, 1, ppid=0, comm="init")
    fake_proc(tmp_path, 50, ppid=1, comm="containerd", netns=DAEMON_NS)
    (tmp_path / "self").mkdir()  # non-numeric entries are ignored
    snap = procs.snapshot(tmp_path)
    by_pid = snap.by_pid()
    assert set(by_pid) == {1, 50}
    assert by_pid[50].comm == "containerd"
    assert by_pid[50].netns == DAEMON_NS
    assert by_pid[50].ppid == 1


def test_descendants() -> None:
    ps = [
        procs.ProcInfo(2, 1, 0, "a", "", "", ""),
        procs.ProcInfo(3, 2, 0, "b", "", "", ""),
        procs.ProcInfo(4, 3, 0, "c", "", "", ""),
        procs.ProcInfo(5, 1, 0, "d", "", "", ""),
    ]
    assert procs.descendants(ps, [2]) == {2, 3, 4}
    assert procs.descendants(ps, []) == set()


def _world(root: Path) -> None:
    """Before: init, the daemon, the bench tool, a registry."""
    fake_proc(root, 1, ppid=0, comm="init")
    fake_proc(root, 50, comm="containerd", netns=DAEMON_NS, pss=40000)
    fake_proc(root, 60, comm="python", netns=DAEMON_NS)  # the bench tool
    fake_proc(root, 70, comm="docker-registry", netns=DAEMON_NS)


def _pods(root: Path) -> None:
    """After: two pods, each a shim (daemon ns), a pause and a workload (pod ns)."""
    for i, ns in ((1, POD1_NS), (2, POD2_NS)):
        shim = 100 * i
        fake_proc(root, shim, comm="containerd-shim", netns=DAEMON_NS, pss=3000, rss=9000,
                  cgroup="4:memory:/\n")
        fake_proc(root, shim + 1, ppid=shim, comm="pause", netns=ns, pss=300, rss=900,
                  cgroup=f"4:memory:/tether-bench/pod{i}/sandbox{i}\n")
        fake_proc(root, shim + 2, ppid=shim, comm="sleep", netns=ns, pss=150, rss=500,
                  cgroup=f"4:memory:/tether-bench/pod{i}/ctr{i}\n")


def test_account_counts_added_runtime_processes_only(tmp_path: Path) -> None:
    _world(tmp_path)
    before = procs.snapshot(tmp_path)
    _pods(tmp_path)
    # a child of the bench tool (excluded), and a process of someone else's test netns
    fake_proc(tmp_path, 61, ppid=60, comm="helper", netns=DAEMON_NS, pss=999)
    fake_proc(tmp_path, 900, comm="other-test", netns=OTHER_NS, pss=5000)
    after = procs.snapshot(tmp_path)

    acc = procs.account(
        before, after,
        workload_pids=[102, 202],
        scope_netns={DAEMON_NS, POD1_NS, POD2_NS},
        exclude_pids=[60],
        proc_root=tmp_path,
    )
    assert sorted(p.pid for p in acc.counted) == [100, 101, 200, 201]
    assert sorted(p.pid for p in acc.workload) == [102, 202]
    assert acc.pss_kb == 2 * (3000 + 300)
    assert acc.rss_kb == 2 * (9000 + 900)
    assert acc.out_of_scope == 1
    names = acc.by_name()
    assert names["containerd-shim"] == {"count": 2, "pss_kb": 6000, "rss_kb": 18000}
    assert names["pause"]["count"] == 2


def test_account_workload_by_cgroup_when_pid_unknown(tmp_path: Path) -> None:
    _world(tmp_path)
    before = procs.snapshot(tmp_path)
    _pods(tmp_path)
    after = procs.snapshot(tmp_path)
    acc = procs.account(before, after, workload_cgroup_markers=["ctr1", "ctr2"],
                        scope_netns=None, proc_root=tmp_path)
    assert sorted(p.pid for p in acc.workload) == [102, 202]
    assert sorted(p.pid for p in acc.counted) == [100, 101, 200, 201]


def test_account_workload_descendants_excluded(tmp_path: Path) -> None:
    _world(tmp_path)
    before = procs.snapshot(tmp_path)
    _pods(tmp_path)
    fake_proc(tmp_path, 103, ppid=102, comm="sh", netns=POD1_NS, pss=77)  # workload's child
    after = procs.snapshot(tmp_path)
    acc = procs.account(before, after, workload_pids=[102, 202], proc_root=tmp_path)
    assert 103 in {p.pid for p in acc.workload}
    assert 103 not in {p.pid for p in acc.counted}


def test_account_pid_reuse_counts_as_new(tmp_path: Path) -> None:
    _world(tmp_path)
    fake_proc(tmp_path, 300, comm="old", netns=DAEMON_NS, start=5)
    before = procs.snapshot(tmp_path)
    fake_proc(tmp_path, 300, comm="shim", netns=DAEMON_NS, start=99999, pss=42)
    after = procs.snapshot(tmp_path)
    acc = procs.account(before, after, proc_root=tmp_path)
    assert [(p.pid, p.comm, p.pss_kb) for p in acc.counted] == [(300, "shim", 42)]


def test_account_skips_processes_that_exited(tmp_path: Path) -> None:
    _world(tmp_path)
    before = procs.snapshot(tmp_path)
    fake_proc(tmp_path, 400, comm="gone", netns=DAEMON_NS, pss=None)  # no smaps_rollup
    after = procs.snapshot(tmp_path)
    assert procs.account(before, after, proc_root=tmp_path).counted == []


def test_pid_listening_on(tmp_path: Path) -> None:
    _world(tmp_path)
    sock = "/run/x/containerd.sock"
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "unix").write_text(
        "Num       RefCount Protocol Flags    Type St Inode Path\n"
        f"0000000000000000: 00000002 00000000 00010000 0001 01 5551 {sock}\n"
        f"0000000000000000: 00000003 00000000 00000000 0001 03 5552 {sock}\n"
        "0000000000000000: 00000002 00000000 00010000 0001 01 6000 /run/other.sock\n"
        "0000000000000000: 00000002 00000000 00010000 0001 01 6001 ///run/grpc.sock\n"
    )
    fd = tmp_path / "50" / "fd"
    fd.mkdir()
    os.symlink("socket:[5552]", fd / "3")  # a connected (client) socket: not this one
    os.symlink("socket:[5551]", fd / "7")
    fd60 = tmp_path / "60" / "fd"
    fd60.mkdir()
    os.symlink("socket:[6000]", fd60 / "4")
    os.symlink("socket:[6001]", fd60 / "5")
    assert procs.pid_listening_on(sock, tmp_path) == 50
    assert procs.pid_listening_on("/run/grpc.sock", tmp_path) == 60  # bound as ///run/...
    assert procs.pid_listening_on("/run/none.sock", tmp_path) is None
