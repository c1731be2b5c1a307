"""CRI metrics (ListMetricDescriptors / ListPodSandboxMetrics): the cAdvisor metric names the
kubelet serves on /metrics/cadvisor when PodAndContainerStatsFromCRI is on.

Every container metric carries the labels ``id``, ``name`` and ``image`` (the container's id,
its CRI name and the image it was created from), and some one more (``interface``,
``device``, ``failure_type``/``scope``). Network metrics are the pod's (its containers share
its network namespace), labelled with the pod's id and name. Values come from the same cgroup
files the stats RPCs read (v1 controllers where mounted, else the unified tree), the pod's
network namespace, /proc of the cgroup's processes and the container's writable layer.

Pure parsers and a ``sample_*`` reader per group; protobuf stays in shim/rpc.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from shim.stats import cgroup, network

BASE_LABELS = ("id", "name", "image")
COUNTER, GAUGE = "counter", "gauge"


@dataclass(frozen=True)
class Descriptor:
    name: str
    help: str
    kind: str  # counter or gauge
    extra_labels: tuple[str, ...] = ()

    @property
    def label_keys(self) -> tuple[str, ...]:
        return (*BASE_LABELS, *self.extra_labels)


def _d(name: str, help_: str, kind: str = GAUGE, *extra: str) -> Descriptor:
    return Descriptor(name, help_, kind, extra)


DESCRIPTORS: tuple[Descriptor, ...] = (
    _d("container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", COUNTER),
    _d("container_cpu_user_seconds_total", "Cumulative user cpu time consumed in seconds.",
       COUNTER),
    _d("container_cpu_system_seconds_total", "Cumulative system cpu time consumed in seconds.",
       COUNTER),
    _d("container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.",
       COUNTER),
    _d("container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.",
       COUNTER),
    _d("container_cpu_cfs_throttled_seconds_total",
       "Total time duration the container has been throttled.", COUNTER),
    _d("container_memory_usage_bytes",
       "Current memory usage in bytes, including all memory regardless of when it was accessed."),
    _d("container_memory_working_set_bytes", "Current working set in bytes."),
    _d("container_memory_rss", "Size of RSS in bytes."),
    _d("container_memory_cache", "Number of bytes of page cache memory."),
    _d("container_memory_mapped_file", "Size of memory mapped files in bytes."),
    _d("container_memory_swap", "Container swap usage in bytes."),
    _d("container_memory_kernel_usage", "Size of kernel memory allocated in bytes."),
    _d("container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes."),
    _d("container_memory_failcnt", "Number of memory usage hits limits.", COUNTER),
    _d("container_memory_failures_total", "Cumulative count of memory allocation failures.",
       COUNTER, "failure_type", "scope"),
    _d("container_oom_events_total", "Count of out of memory events observed for the container.",
       COUNTER),
    _d("container_spec_cpu_period", "CPU period of the container."),
    _d("container_spec_cpu_quota", "CPU quota of the container."),
    _d("container_spec_cpu_shares", "CPU share of the container."),
    _d("container_spec_memory_limit_bytes", "Memory limit for the container."),
    _d("container_spec_memory_swap_limit_bytes", "Memory swap limit for the container."),
    _d("container_spec_memory_reservation_limit_bytes",
       "Memory reservation limit for the container."),
    _d("container_processes", "Number of processes running inside the container."),
    _d("container_threads", "Number of threads running inside the container."),
    _d("container_threads_max", "Maximum number of threads allowed inside the container."),
    _d("container_file_descriptors",
       "Number of open file descriptors for the container."),
    _d("container_sockets", "Number of open sockets for the container."),
    _d("container_start_time_seconds", "Start time of the container since unix epoch in seconds."),
    _d("container_last_seen", "Last time a container was seen by the exporter."),
    _d("container_fs_usage_bytes", "Number of bytes that are consumed by the container on this "
       "filesystem.", GAUGE, "device"),
    _d("container_fs_limit_bytes", "Number of bytes that can be consumed by the container on "
       "this filesystem.", GAUGE, "device"),
    _d("container_fs_inodes_free", "Number of available Inodes.", GAUGE, "device"),
    _d("container_fs_inodes_total", "Number of Inodes.", GAUGE, "device"),
    _d("container_fs_reads_bytes_total", "Cumulative count of bytes read.", COUNTER, "device"),
    _d("container_fs_writes_bytes_total", "Cumulative count of bytes written.", COUNTER,
       "device"),
    _d("container_fs_reads_total", "Cumulative count of reads completed.", COUNTER, "device"),
    _d("container_fs_writes_total", "Cumulative count of writes completed.", COUNTER, "device"),
    _d("container_blkio_device_usage_total", "Blkio device bytes usage.", COUNTER,
       "device", "major", "minor", "operation"),
    _d("container_network_receive_bytes_total", "Cumulative count of bytes received.", COUNTER,
       "interface"),
    _d("container_network_receive_packets_total", "Cumulative count of packets received.",
       COUNTER, "interface"),
    _d("container_network_receive_packets_dropped_total",
       "Cumulative count of packets dropped while receiving.", COUNTER, "interface"),
    _d("container_network_receive_errors_total",
       "Cumulative count of errors encountered while receiving.", COUNTER, "interface"),
    _d("container_network_transmit_bytes_total", "Cumulative count of bytes transmitted.",
       COUNTER, "interface"),
    _d("container_network_transmit_packets_total", "Cumulative count of packets transmitted.",
       COUNTER, "interface"),
    _d("container_network_transmit_packets_dropped_total",
       "Cumulative count of packets dropped while transmitting.", COUNTER, "interface"),
    _d("container_network_transmit_errors_total",
       "Cumulative count of errors encountered while transmitting.", COUNTER, "interface"),
)
BY_NAME = {d.name: d for d in DESCRIPTORS}


@dataclass(frozen=True)
class Sample:
    name: str
    labels: tuple[str, ...]  # values for BY_NAME[name].label_keys
    value: int
    timestamp: int  # ns


@dataclass(frozen=True)
class MetricsTarget:
    """What one container's metrics need, taken from its record on the event loop."""

    id: str
    name: str
    image: str
    cgroup: str  # relative to each hierarchy's root
    upper: str  # writable layer ("" if none)
    started_at: int  # ns
    resources: dict[str, object] = field(default_factory=dict)  # OCI linux.resources


# --- pure parsers ---------------------------------------------------------------------------
def cpu_times_v1(cpuacct_stat: str, user_hz: int = 100) -> tuple[int, int]:
    """(user, system) ns from ``cpuacct.stat`` (USER_HZ ticks)."""
    st = cgroup.parse_keyed(cpuacct_stat)
    tick = 1_000_000_000 // user_hz
    return st.get("user", 0) * tick, st.get("system", 0) * tick


def cfs_v1(cpu_stat: str) -> tuple[int, int, int]:
    """(periods, throttled periods, throttled ns) from v1 ``cpu.stat``."""
    st = cgroup.parse_keyed(cpu_stat)
    return st.get("nr_periods", 0), st.get("nr_throttled", 0), st.get("throttled_time", 0)


def cpu_v2(cpu_stat: str) -> dict[str, int]:
    """user/system ns and the cfs counters from v2 ``cpu.stat`` (µs there)."""
    st = cgroup.parse_keyed(cpu_stat)
    return {"user": st.get("user_usec", 0) * 1000, "system": st.get("system_usec", 0) * 1000,
            "periods": st.get("nr_periods", 0), "throttled": st.get("nr_throttled", 0),
            "throttled_ns": st.get("throttled_usec", 0) * 1000}


def blkio_v1(text: str) -> list[tuple[int, int, str, int]]:
    """(major, minor, operation, bytes) from ``blkio.throttle.io_service_bytes*``."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and ":" in parts[0]:
            major, _, minor = parts[0].partition(":")
            if major.isdigit() and minor.isdigit() and parts[2].isdigit():
                out.append((int(major), int(minor), parts[1], int(parts[2])))
    return out


def io_stat_v2(text: str) -> list[tuple[int, int, str, int]]:
    """(major, minor, Read|Write, bytes) from v2 ``io.stat``."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if not parts or ":" not in parts[0]:
            continue
        major, _, minor = parts[0].partition(":")
        kv = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        for key, op in (("rbytes", "Read"), ("wbytes", "Write")):
            if kv.get(key, "").isdigit() and major.isdigit() and minor.isdigit():
                out.append((int(major), int(minor), op, int(kv[key])))
    return out


# --- readers --------------------------------------------------------------------------------
def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _procs(rel: str, h: cgroup.Hierarchies) -> list[int]:
    base = h.v1.get("pids") or h.v1.get("memory") or h.v2
    text = _read(os.path.join(base, rel, "cgroup.procs")) if base else None
    return [int(p) for p in (text or "").split() if p.isdigit()]


def _proc_counts(pids: list[int]) -> tuple[int, int, int]:
    """(threads, open fds, sockets) of these processes."""
    threads = fds = sockets = 0
    for pid in pids:
        status = _read(f"/proc/{pid}/status") or ""
        for line in status.splitlines():
            if line.startswith("Threads:"):
                threads += int(line.split()[1])
                break
        try:
            names = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        fds += len(names)
        for n in names:
            try:
                if os.readlink(f"/proc/{pid}/fd/{n}").startswith("socket:"):
                    sockets += 1
            except OSError:
                continue
    return threads, fds, sockets


def _dir_usage(path: str) -> int:
    total = 0
    for root, dirs, files in os.walk(path):
        for n in files + dirs:
            try:
                total += os.lstat(os.path.join(root, n)).st_blocks * 512
            except OSError:
                continue
    return total


def _int(v: object) -> int:
    return v if isinstance(v, int) and v > 0 else 0


def sample_container(t: MetricsTarget, h: cgroup.Hierarchies, fs_path: str,
                     now_ns: int | None = None) -> list[Sample]:
    now = now_ns or time.time_ns()
    base = (t.id, t.name, t.image)
    out: list[Sample] = []

    def put(name: str, value: int, *extra: str) -> None:
        out.append(Sample(name, (*base, *extra), max(int(value), 0), now))

    rel = t.cgroup.strip("/")
    v2 = os.path.join(h.v2, rel) if h.v2 else None
    s = cgroup.read(rel, h, now)
    # cpu
    user = system = periods = throttled = throttled_ns = 0
    if "cpuacct" in h.v1:
        text = _read(os.path.join(h.v1["cpuacct"], rel, "cpuacct.stat"))
        user, system = cpu_times_v1(text) if text else (0, 0)
    if "cpu" in h.v1:
        text = _read(os.path.join(h.v1["cpu"], rel, "cpu.stat"))
        periods, throttled, throttled_ns = cfs_v1(text) if text else (0, 0, 0)
    if v2 and not ("cpuacct" in h.v1 and "cpu" in h.v1):
        c = cpu_v2(_read(os.path.join(v2, "cpu.stat")) or "")
        if "cpuacct" not in h.v1:
            user, system = c["user"], c["system"]
        if "cpu" not in h.v1:
            periods, throttled, throttled_ns = c["periods"], c["throttled"], c["throttled_ns"]
    put("container_cpu_usage_seconds_total", (s.cpu_usage_ns or 0) // 1_000_000_000)
    put("container_cpu_user_seconds_total", user // 1_000_000_000)
    put("container_cpu_system_seconds_total", system // 1_000_000_000)
    put("container_cpu_cfs_periods_total", periods)
    put("container_cpu_cfs_throttled_periods_total", throttled)
    put("container_cpu_cfs_throttled_seconds_total", throttled_ns // 1_000_000_000)
    # memory
    cache = mapped = kernel = max_usage = failcnt = 0
    if "memory" in h.v1:
        d = os.path.join(h.v1["memory"], rel)
        st = cgroup.parse_keyed(_read(f"{d}/memory.stat") or "")
        cache = st.get("total_cache", st.get("cache", 0))
        mapped = st.get("total_mapped_file", st.get("mapped_file", 0))
        kernel = cgroup.parse_int(_read(f"{d}/memory.kmem.usage_in_bytes") or "") or 0
        max_usage = cgroup.parse_int(_read(f"{d}/memory.max_usage_in_bytes") or "") or 0
        failcnt = cgroup.parse_int(_read(f"{d}/memory.failcnt") or "") or 0
    elif v2:
        st = cgroup.parse_keyed(_read(f"{v2}/memory.stat") or "")
        cache, mapped, kernel = st.get("file", 0), st.get("file_mapped", 0), st.get("kernel", 0)
        max_usage = cgroup.parse_int(_read(f"{v2}/memory.peak") or "") or 0
        failcnt = cgroup.parse_keyed(_read(f"{v2}/memory.events") or "").get("max", 0)
    put("container_memory_usage_bytes", s.memory_usage or 0)
    put("container_memory_working_set_bytes", s.working_set or 0)
    put("container_memory_rss", s.rss or 0)
    put("container_memory_cache", cache)
    put("container_memory_mapped_file", mapped)
    put("container_memory_swap", s.swap_usage or 0)
    put("container_memory_kernel_usage", kernel)
    put("container_memory_max_usage_bytes", max_usage)
    put("container_memory_failcnt", failcnt)
    minor = (s.page_faults or 0) - (s.major_page_faults or 0)
    put("container_memory_failures_total", minor, "pgfault", "container")
    put("container_memory_failures_total", s.major_page_faults or 0, "pgmajfault", "container")
    put("container_oom_events_total", cgroup.oom_kills(rel, h))
    # spec
    cpu = t.resources.get("cpu") if isinstance(t.resources.get("cpu"), dict) else {}
    mem = t.resources.get("memory") if isinstance(t.resources.get("memory"), dict) else {}
    assert isinstance(cpu, dict) and isinstance(mem, dict)
    put("container_spec_cpu_period", _int(cpu.get("period")))
    put("container_spec_cpu_quota", _int(cpu.get("quota")))
    put("container_spec_cpu_shares", _int(cpu.get("shares")))
    put("container_spec_memory_limit_bytes", _int(mem.get("limit")))
    put("container_spec_memory_swap_limit_bytes", _int(mem.get("swap")))
    put("container_spec_memory_reservation_limit_bytes", _int(mem.get("reservation")))
    # processes
    pids = _procs(rel, h)
    threads, fds, sockets = _proc_counts(pids)
    pids_max = None
    if "pids" in h.v1:
        pids_max = cgroup.parse_int(_read(os.path.join(h.v1["pids"], rel, "pids.max")) or "")
    elif v2:
        pids_max = cgroup.parse_int(_read(f"{v2}/pids.max") or "")
    put("container_processes", s.pids if s.pids is not None else len(pids))
    put("container_threads", threads)
    put("container_threads_max", pids_max or 0)
    put("container_file_descriptors", fds)
    put("container_sockets", sockets)
    put("container_start_time_seconds", t.started_at // 1_000_000_000)
    put("container_last_seen", now // 1_000_000_000)
    # the writable layer's filesystem
    if t.upper:
        try:
            vfs = os.statvfs(fs_path)
        except OSError:
            vfs = None
        if vfs is not None:
            put("container_fs_usage_bytes", _dir_usage(t.upper), fs_path)
            put("container_fs_limit_bytes", vfs.f_blocks * vfs.f_frsize, fs_path)
            put("container_fs_inodes_free", vfs.f_ffree, fs_path)
            put("container_fs_inodes_total", vfs.f_files, fs_path)
    # block I/O
    io: list[tuple[int, int, str, int]] = []
    if "blkio" in h.v1:
        d = os.path.join(h.v1["blkio"], rel)
        io = blkio_v1(_read(f"{d}/blkio.throttle.io_service_bytes_recursive")
                      or _read(f"{d}/blkio.throttle.io_service_bytes") or "")
    elif v2:
        io = io_stat_v2(_read(f"{v2}/io.stat") or "")
    for major, minor_, op, value in io:
        if op in ("Read", "Write"):
            dev = f"{major}:{minor_}"
            put("container_blkio_device_usage_total", value, dev, str(major), str(minor_), op)
            put("container_fs_reads_bytes_total" if op == "Read"
                else "container_fs_writes_bytes_total", value, dev)
    return out


def sample_network(pod_id: str, pod_name: str, netns: str,
                   now_ns: int | None = None) -> list[Sample]:
    """The pod's interfaces (loopback left out), labelled with the pod's id and name."""
    now = now_ns or time.time_ns()
    out = []
    for i in network.read_netns(netns):
        base = (pod_id, pod_name, "", i.name)
        for name, value in (
            ("container_network_receive_bytes_total", i.rx_bytes),
            ("container_network_receive_packets_total", i.rx_packets),
            ("container_network_receive_packets_dropped_total", i.rx_dropped),
            ("container_network_receive_errors_total", i.rx_errors),
            ("container_network_transmit_bytes_total", i.tx_bytes),
            ("container_network_transmit_packets_total", i.tx_packets),
            ("container_network_transmit_packets_dropped_total", i.tx_dropped),
            ("container_network_transmit_errors_total", i.tx_errors),
        ):
            out.append(Sample(name, base, value, now))
    return out
