"""Stats samples (shim.stats.samples, shim.stats.metrics) -> CRI messages: ContainerStats,
PodSandboxStats and the cAdvisor-style Metric. Pure functions."""

from __future__ import annotations

from shim.cri import api_pb2 as pb
from shim.stats import metrics
from shim.stats.samples import (
    ContainerSample,
    Cpu,
    Filesystem,
    Interface,
    Memory,
    Network,
    PodSample,
    Swap,
)

_KIND = {metrics.COUNTER: pb.COUNTER, metrics.GAUGE: pb.GAUGE}


def _u(v: int) -> pb.UInt64Value:
    return pb.UInt64Value(value=v)


def _cpu(c: Cpu) -> pb.CpuUsage:
    return pb.CpuUsage(timestamp=c.timestamp, usage_core_nano_seconds=_u(c.usage_core_ns),
                       usage_nano_cores=_u(c.usage_nano_cores))


def _memory(m: Memory) -> pb.MemoryUsage:
    out = pb.MemoryUsage(timestamp=m.timestamp, working_set_bytes=_u(m.working_set_bytes),
                         available_bytes=_u(m.available_bytes), usage_bytes=_u(m.usage_bytes))
    # unset, not 0, where the host does not tell (the kubelet tells the two apart)
    if m.rss_bytes is not None:
        out.rss_bytes.value = m.rss_bytes
    if m.page_faults is not None:
        out.page_faults.value = m.page_faults
    if m.major_page_faults is not None:
        out.major_page_faults.value = m.major_page_faults
    return out


def _swap(s: Swap) -> pb.SwapUsage:
    return pb.SwapUsage(timestamp=s.timestamp, swap_usage_bytes=_u(s.usage_bytes),
                        swap_available_bytes=_u(s.available_bytes))


def _filesystem(f: Filesystem) -> pb.FilesystemUsage:
    return pb.FilesystemUsage(timestamp=f.timestamp,
                              fs_id=pb.FilesystemIdentifier(mountpoint=f.mountpoint),
                              used_bytes=_u(f.used_bytes), inodes_used=_u(f.inodes_used))


def _interface(i: Interface) -> pb.NetworkInterfaceUsage:
    return pb.NetworkInterfaceUsage(name=i.name, rx_bytes=_u(i.rx_bytes),
                                    rx_errors=_u(i.rx_errors), tx_bytes=_u(i.tx_bytes),
                                    tx_errors=_u(i.tx_errors))


def _network(n: Network) -> pb.NetworkUsage:
    out = pb.NetworkUsage(timestamp=n.timestamp,
                          interfaces=[_interface(i) for i in n.interfaces])
    if n.default is not None:
        out.default_interface.CopyFrom(_interface(n.default))
    return out


def container_stats(s: ContainerSample) -> pb.ContainerStats:
    t = s.target
    out = pb.ContainerStats(attributes=pb.ContainerAttributes(
        id=t.id, metadata=pb.ContainerMetadata(name=t.name, attempt=t.attempt),
        labels=t.labels, annotations=t.annotations))
    if s.cpu is not None:
        out.cpu.CopyFrom(_cpu(s.cpu))
    if s.memory is not None:
        out.memory.CopyFrom(_memory(s.memory))
    if s.swap is not None:
        out.swap.CopyFrom(_swap(s.swap))
    if s.writable_layer is not None:
        out.writable_layer.CopyFrom(_filesystem(s.writable_layer))
    return out


def pod_stats(s: PodSample) -> pb.PodSandboxStats:
    t = s.target
    linux = pb.LinuxPodSandboxStats(containers=[container_stats(c) for c in s.containers])
    if s.cpu is not None:
        linux.cpu.CopyFrom(_cpu(s.cpu))
    if s.memory is not None:
        linux.memory.CopyFrom(_memory(s.memory))
    if s.processes is not None:
        linux.process.CopyFrom(pb.ProcessUsage(timestamp=s.processes.timestamp,
                                               process_count=_u(s.processes.count)))
    if s.network is not None:
        linux.network.CopyFrom(_network(s.network))
    return pb.PodSandboxStats(
        attributes=pb.PodSandboxAttributes(
            id=t.id, metadata=pb.PodSandboxMetadata(name=t.name, uid=t.uid,
                                                    namespace=t.namespace, attempt=t.attempt),
            labels=t.labels, annotations=t.annotations),
        linux=linux,
    )


def metric(s: metrics.Sample) -> pb.Metric:
    return pb.Metric(name=s.name, timestamp=s.timestamp,
                     metric_type=_KIND[metrics.BY_NAME[s.name].kind],
                     label_values=list(s.labels), value=pb.UInt64Value(value=s.value))


def descriptors() -> list[pb.MetricDescriptor]:
    return [pb.MetricDescriptor(name=m.name, help=m.help, label_keys=list(m.label_keys))
            for m in metrics.DESCRIPTORS]
