"""The stats calls the kubelet polls, against real containers (runc and crun): CPU rates,
memory, writable layers, pod network and process counts, and the List/Stream filters."""

from __future__ import annotations

import secrets
import time

import grpc
import pytest

from shim.cri import api_pb2 as pb
from tests.integration.test_containers import Ctr, ctr  # noqa: F401

GATEWAY = "10.89.0.1"  # first address of the test bridge's 10.89.0.0/24
MB = 1 << 20


def cstats(c: Ctr, cid: str) -> pb.ContainerStats:
    return c.rt.ContainerStats(pb.ContainerStatsRequest(container_id=cid), timeout=30).stats


def pstats(c: Ctr, sid: str) -> pb.PodSandboxStats:
    return c.rt.PodSandboxStats(pb.PodSandboxStatsRequest(pod_sandbox_id=sid), timeout=30).stats


def list_ids(c: Ctr, **filt: object) -> list[str]:
    f = pb.ContainerStatsFilter(**filt)  # type: ignore[arg-type]
    r = c.rt.ListContainerStats(pb.ListContainerStatsRequest(filter=f), timeout=30)
    return sorted(s.attributes.id for s in r.stats)


def list_pod_ids(c: Ctr, **filt: object) -> list[str]:
    f = pb.PodSandboxStatsFilter(**filt)  # type: ignore[arg-type]
    r = c.rt.ListPodSandboxStats(pb.ListPodSandboxStatsRequest(filter=f), timeout=30)
    return sorted(s.attributes.id for s in r.stats)


def test_cpu_usage_and_rate_of_a_busy_container(ctr: Ctr) -> None:  # noqa: F811
    sid, pcfg = ctr.pod("cpu")
    cid = ctr.run(sid, pcfg, "burn", ["sh", "-c", "while :; do :; done"])
    first = cstats(ctr, cid)
    assert first.attributes.id == cid and first.attributes.metadata.name == "burn"
    assert first.cpu.timestamp > 0
    time.sleep(1.5)
    second = cstats(ctr, cid)
    assert second.cpu.usage_core_nano_seconds.value > first.cpu.usage_core_nano_seconds.value
    # A busy loop: a large part of a core (the CI machine has two, shared with others).
    assert second.cpu.usage_nano_cores.value > 100_000_000, second.cpu
    assert second.memory.working_set_bytes.value > 0
    assert second.memory.usage_bytes.value >= second.memory.working_set_bytes.value


def test_memory_and_writable_layer(ctr: Ctr) -> None:  # noqa: F811
    sid, pcfg = ctr.pod("mem")
    cid = ctr.run(sid, pcfg, "fill", ["sleep", "3600"])
    ctr.out(cid, "dd", "if=/dev/zero", "of=/dev/shm/x", "bs=1M", "count=20")
    ctr.out(cid, "dd", "if=/dev/zero", "of=/big", "bs=1M", "count=10")
    st = cstats(ctr, cid)
    # tmpfs pages are charged to the writer's cgroup and cannot be reclaimed as cache.
    assert st.memory.working_set_bytes.value >= 20 * MB, st.memory
    assert st.memory.usage_bytes.value >= st.memory.working_set_bytes.value
    assert st.memory.HasField("rss_bytes") and st.memory.page_faults.value > 0
    assert st.writable_layer.used_bytes.value >= 10 * MB, st.writable_layer
    assert st.writable_layer.inodes_used.value >= 2
    assert st.writable_layer.fs_id.mountpoint.endswith("/containers")
    # The pod (its cgroups summed under the shared default parent) counts the same memory.
    ps = pstats(ctr, sid)
    assert ps.linux.memory.working_set_bytes.value >= 20 * MB
    assert [c.attributes.id for c in ps.linux.containers] == [cid]


def test_pod_network_and_processes(ctr: Ctr) -> None:  # noqa: F811
    parent = f"/tetherstats-{secrets.token_hex(3)}/pod-net"  # a parent of its own, as kubelet's
    sid, pcfg = ctr.pod("net", cgroup_parent=parent)
    caps = pb.LinuxContainerSecurityContext(
        capabilities=pb.Capability(add_capabilities=["NET_RAW"]))
    cid = ctr.run(sid, pcfg, "pinger", ["sleep", "3600"],
                  linux=pb.LinuxContainerConfig(security_context=caps))
    before = pstats(ctr, sid)
    ctr.out(cid, "ping", "-c", "3", "-W", "2", GATEWAY)
    st = pstats(ctr, sid)
    assert st.attributes.id == sid and st.attributes.metadata.name == "net"
    net = st.linux.network
    assert net.default_interface.name == "eth0"
    assert "lo" not in [i.name for i in net.interfaces]
    eth0 = net.default_interface
    assert eth0.rx_bytes.value >= before.linux.network.default_interface.rx_bytes.value + 3 * 84
    assert eth0.tx_bytes.value >= before.linux.network.default_interface.tx_bytes.value + 3 * 84
    # The pause-holder and the container's sleep, from the pod's own parent cgroup.
    assert st.linux.process.process_count.value >= 2
    assert st.linux.cpu.usage_core_nano_seconds.value > 0
    assert st.linux.memory.usage_bytes.value > 0
    assert [c.attributes.id for c in st.linux.containers] == [cid]
    assert st.linux.containers[0].cpu.usage_core_nano_seconds.value > 0


def test_list_filters_stream_and_not_found(ctr: Ctr) -> None:  # noqa: F811
    a, acfg = ctr.pod("a", labels={"app": "web"})
    b, bcfg = ctr.pod("b", labels={"app": "db"})
    a1 = ctr.run(a, acfg, "a1", ["sleep", "3600"], labels={"role": "main"})
    a2 = ctr.run(a, acfg, "a2", ["sleep", "3600"], labels={"role": "side"})
    b1 = ctr.run(b, bcfg, "b1", ["sleep", "3600"], labels={"role": "main"})
    done = ctr.run(b, bcfg, "done", ["true"])
    ctr.wait_exit(done)
    created = ctr.create(b, bcfg, "idle", ["sleep", "3600"])

    # Running containers only.
    assert list_ids(ctr) == sorted([a1, a2, b1])
    assert list_ids(ctr, id=a1) == [a1]
    assert list_ids(ctr, id=a1[:12]) == [a1]
    assert list_ids(ctr, pod_sandbox_id=a) == sorted([a1, a2])
    assert list_ids(ctr, label_selector={"role": "main"}) == sorted([a1, b1])
    assert list_ids(ctr, pod_sandbox_id=b, label_selector={"role": "side"}) == []
    assert list_ids(ctr, id=done) == []
    # A single container in any state is answered; one that is not running has no cgroup.
    st = cstats(ctr, created)
    assert st.attributes.id == created and not st.HasField("cpu")

    streamed = [s.attributes.id for r in ctr.rt.StreamContainerStats(
        pb.StreamContainerStatsRequest(filter=pb.ContainerStatsFilter(pod_sandbox_id=a)),
        timeout=30) for s in r.container_stats]
    assert sorted(streamed) == sorted([a1, a2])

    assert list_pod_ids(ctr) == sorted([a, b])
    assert list_pod_ids(ctr, id=b) == [b]
    assert list_pod_ids(ctr, label_selector={"app": "web"}) == [a]
    pods = ctr.rt.ListPodSandboxStats(pb.ListPodSandboxStatsRequest(), timeout=30).stats
    by_id = {p.attributes.id: p for p in pods}
    assert sorted(c.attributes.id for c in by_id[a].linux.containers) == sorted([a1, a2])
    assert [c.attributes.id for c in by_id[b].linux.containers] == [b1]
    streamed = [s.attributes.id for r in ctr.rt.StreamPodSandboxStats(
        pb.StreamPodSandboxStatsRequest(filter=pb.PodSandboxStatsFilter(
            label_selector={"app": "db"})), timeout=30) for s in r.pod_sandbox_stats]
    assert streamed == [b]

    # A stopped pod is left out of the List calls.
    ctr.env.stop(b)
    assert list_pod_ids(ctr) == [a]

    for call, req in (
        (ctr.rt.ContainerStats, pb.ContainerStatsRequest(container_id="nope")),
        (ctr.rt.PodSandboxStats, pb.PodSandboxStatsRequest(pod_sandbox_id="nope")),
    ):
        with pytest.raises(grpc.RpcError) as e:
            call(req, timeout=30)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
