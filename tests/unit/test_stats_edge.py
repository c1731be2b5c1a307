"""The stats RPC edge: typed samples to CRI messages (which fields are set, which unset), the
List/Stream handler pair, and where a pod lives as the sandbox manager tells it."""

from __future__ import annotations

import asyncio
from typing import Any

from podsandbox.manager import SandboxManager
from podsandbox.types import Mode, NamespaceModes, SandboxDetails
from shim.cri import api_pb2 as pb
from shim.rpc import registry, stats_convert
from shim.rpc.streaming import CHUNK
from shim.stats import metrics
from shim.stats.samples import (
    ContainerSample,
    ContainerTarget,
    Cpu,
    Filesystem,
    Interface,
    Memory,
    Network,
    PodSample,
    PodTarget,
    Processes,
    Swap,
)
from shim.store import SandboxRecord

_CTR = ContainerTarget(id="c1", sandbox_id="p1", name="web", attempt=2, labels={"a": "b"},
                       annotations={"x": "y"}, running=True, cgroup="kube/p1/c1", upper="")


def test_container_stats_message() -> None:
    s = ContainerSample(
        target=_CTR, cpu=Cpu(timestamp=5, usage_core_ns=7, usage_nano_cores=0),
        memory=Memory(timestamp=5, working_set_bytes=10, available_bytes=0, usage_bytes=12,
                      rss_bytes=3),
        writable_layer=Filesystem(timestamp=6, mountpoint="/m", used_bytes=4096,
                                  inodes_used=2))
    m = stats_convert.container_stats(s)
    assert m.attributes.id == "c1" and m.attributes.metadata.name == "web"
    assert m.attributes.metadata.attempt == 2 and dict(m.attributes.labels) == {"a": "b"}
    assert dict(m.attributes.annotations) == {"x": "y"}
    assert m.cpu.timestamp == 5 and m.cpu.usage_core_nano_seconds.value == 7
    # a rate of 0 is sent (set), as the kubelet reads it; unknowns stay unset
    assert m.cpu.HasField("usage_nano_cores") and m.cpu.usage_nano_cores.value == 0
    assert m.memory.HasField("available_bytes") and m.memory.rss_bytes.value == 3
    assert not m.memory.HasField("page_faults") and not m.memory.HasField("major_page_faults")
    assert m.writable_layer.fs_id.mountpoint == "/m" and m.writable_layer.used_bytes.value == 4096
    assert not m.HasField("swap")
    m = stats_convert.container_stats(ContainerSample(
        target=_CTR, swap=Swap(timestamp=1, usage_bytes=9, available_bytes=0)))
    assert m.swap.swap_usage_bytes.value == 9 and m.swap.HasField("swap_available_bytes")
    assert not m.HasField("cpu") and not m.HasField("memory")
    assert not m.HasField("writable_layer")


def test_pod_stats_message() -> None:
    pod = PodTarget(id="p1", name="pod", uid="u", namespace="ns", attempt=1, labels={},
                    annotations={"k": "v"}, cgroup="kube/p1/h", parent="kube/p1", netns="/n")
    eth0 = Interface(name="eth0", rx_bytes=1, rx_errors=0, tx_bytes=2, tx_errors=0)
    lo = Interface(name="lo", rx_bytes=5, rx_errors=0, tx_bytes=5, tx_errors=0)
    s = PodSample(target=pod, cpu=Cpu(timestamp=1, usage_core_ns=9, usage_nano_cores=3),
                  processes=Processes(timestamp=1, count=4),
                  network=Network(timestamp=2, interfaces=(lo, eth0), default=eth0),
                  containers=(ContainerSample(target=_CTR),))
    m = stats_convert.pod_stats(s)
    assert m.attributes.metadata.uid == "u" and m.attributes.metadata.namespace == "ns"
    assert dict(m.attributes.annotations) == {"k": "v"}
    assert m.linux.cpu.usage_nano_cores.value == 3 and not m.linux.HasField("memory")
    assert m.linux.process.process_count.value == 4
    assert [i.name for i in m.linux.network.interfaces] == ["lo", "eth0"]
    assert m.linux.network.default_interface.tx_bytes.value == 2
    assert [c.attributes.id for c in m.linux.containers] == ["c1"]
    m = stats_convert.pod_stats(PodSample(target=pod))
    assert not m.linux.HasField("network") and not m.linux.HasField("process")


def test_metric_message() -> None:
    m = stats_convert.metric(metrics.Sample("container_memory_rss", ("c1", "web", "img"), 42, 7))
    assert (m.name, m.metric_type, m.value.value, m.timestamp) == (
        "container_memory_rss", pb.GAUGE, 42, 7)
    assert list(m.label_values) == ["c1", "web", "img"]
    assert [d.name for d in stats_convert.descriptors()] == [d.name for d in metrics.DESCRIPTORS]


def test_list_and_stream_answer_the_same_items(monkeypatch: Any) -> None:
    monkeypatch.setattr(registry, "HANDLERS", {})
    seen: list[Any] = []

    async def select(d: object, req: object) -> list[int]:
        seen.append(req)
        return list(range(CHUNK + 1))

    registry.list_and_stream("ListThings", "StreamThings", select, lambda xs: ("list", list(xs)),
                             lambda xs: ("chunk", list(xs)))

    async def run() -> tuple[Any, list[Any]]:
        one = await registry.HANDLERS["ListThings"](None, "req-l")
        chunks = [c async for c in registry.HANDLERS["StreamThings"](None, "req-s")]
        return one, chunks

    one, chunks = asyncio.run(run())
    assert one == ("list", list(range(CHUNK + 1)))
    assert [c[1] for c in chunks] == [list(range(CHUNK)), [CHUNK]]
    assert seen == ["req-l", "req-s"]


def test_host_view() -> None:
    details = SandboxDetails(cgroup="kubepods/pod1/tether-abc", pins={"net": "/run/netns/x"},
                             modes=NamespaceModes(network=Mode.POD))
    v = SandboxManager.host_view(SandboxRecord(id="abc", details=details))
    assert (v.cgroup, v.parent, v.netns) == ("kubepods/pod1/tether-abc", "kubepods/pod1",
                                             "/run/netns/x")
    details.modes = NamespaceModes(network=Mode.NODE)
    assert SandboxManager.host_view(SandboxRecord(id="abc", details=details)).netns is None
    v = SandboxManager.host_view(SandboxRecord(id="abc",
                                               details=SandboxDetails(cgroup="tether-abc")))
    assert (v.parent, v.netns) == ("", None)
