"""What critest found missing, proven from inside containers with runc and crun: the node's
hostname for pods without one, image volumes, recursive read-only mounts, the user and image
id in ContainerStatus, SupplementalGroupsPolicy, ExecSync timeouts that leave no process,
ExecSync output capped below the kubelet's message limit, log reopening, CRI metrics."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import grpc
import pytest

from shim.containers.exec_sync import OUTPUT_CAP, TRUNCATED
from shim.cri import api_pb2 as pb
from shim.cri import api_pb2_grpc
from tests.integration.test_containers import Ctr, ctr  # noqa: F401
from tests.rig.images import ImageRegistry


def _pull(c: Ctr, ref: str) -> str:
    return c.env.cri.images.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref)),
                                      timeout=120).image_ref


def test_pod_without_hostname_gets_the_nodes(ctr: Ctr) -> None:  # noqa: F811
    # critest's pod names are longer than the 64 bytes sethostname takes
    sid, pcfg = ctr.pod("create-podsandbox-for-container-" + "x" * 40)
    cid = ctr.run(sid, pcfg, "main", ["sleep", "600"])
    assert ctr.out(cid, "hostname") == socket.gethostname()
    assert ctr.out(cid, "cat", "/etc/hostname") == socket.gethostname()


def test_run_as_group_without_user_is_refused(ctr: Ctr) -> None:  # noqa: F811
    sid, pcfg = ctr.pod()
    sc = pb.LinuxContainerSecurityContext(run_as_group=pb.Int64Value(value=1000))
    with pytest.raises(grpc.RpcError) as e:
        ctr.create(sid, pcfg, "g", ["true"], linux=pb.LinuxContainerConfig(security_context=sc))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "run_as_group" in (e.value.details() or "")
    assert not ctr.rt.ListContainers(pb.ListContainersRequest()).containers


def test_exec_timeout_kills_the_whole_tree_and_answers_when_it_is_gone(ctr: Ctr) -> None:  # noqa: F811
    sid, pcfg = ctr.pod()
    # "sh -c top" is critest's pause command: its PID 1 reaps nothing
    cid = ctr.run(sid, pcfg, "main", ["sh", "-c", "top"])
    with pytest.raises(grpc.RpcError) as e:
        ctr.exec(cid, "sh", "-c", "sleep 301 & sleep 302 & sleep 303; wait", timeout=1)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # at once, not a second later: no sleep left, not even as a zombie
    ps = ctr.out(cid, "ps", "-o", "pid,stat,args")
    assert "sleep 30" not in ps and "[sleep]" not in ps, ps
    # critest's own check: `sleep 4321` timed out, then `pgrep sleep` prints nothing
    with pytest.raises(grpc.RpcError):
        ctr.exec(cid, "sleep", "4321", timeout=1)
    assert ctr.out(cid, "sh", "-c", "pgrep sleep || true") == ""


def test_exec_output_is_capped_together_with_a_marker(ctr: Ctr) -> None:  # noqa: F811
    sid, pcfg = ctr.pod()
    cid = ctr.run(sid, pcfg, "main", ["sleep", "600"])
    # a client that takes what the kubelet takes: 16 MiB a message
    ch = grpc.insecure_channel(f"unix://{ctr.env.daemon.socket}",
                               options=[("grpc.max_receive_message_length", 16 << 20)])
    try:
        r = api_pb2_grpc.RuntimeServiceStub(ch).ExecSync(pb.ExecSyncRequest(
            container_id=cid, timeout=60,
            cmd=["sh", "-c", "head -c 12000000 /dev/zero; head -c 12000000 /dev/zero >&2"]),
            timeout=90)
    finally:
        ch.close()
    assert r.exit_code == 0
    total = len(r.stdout) + len(r.stderr)
    assert total <= OUTPUT_CAP
    assert len(r.stdout) == 12000000
    assert r.stderr.endswith(TRUNCATED)


def test_reopen_log_answers_once_the_new_file_exists(ctr: Ctr) -> None:  # noqa: F811
    sid, pcfg = ctr.pod()
    cid = ctr.run(sid, pcfg, "talker", ["sh", "-c", "while true; do echo x; sleep 1; done"])
    path = ctr.status(cid).status.log_path
    for _ in range(5):
        os.rename(path, path + ".old")
        ctr.rt.ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=cid))
        assert os.path.exists(path)  # no wait: the answer came after the reopen


def test_image_volume_read_only_sub_path_and_in_use(ctr: Ctr, registry: ImageRegistry) -> None:  # noqa: F811
    web = registry.ref("web")
    web_id = _pull(ctr, web)
    sid, pcfg = ctr.pod()
    vol = pb.Mount(container_path="/vol", readonly=True, image=pb.ImageSpec(image=web))
    sub = pb.Mount(container_path="/sub", readonly=True, image=pb.ImageSpec(image=web),
                   image_sub_path="www")
    cid = ctr.run(sid, pcfg, "main", ["sleep", "600"], mounts=[vol, sub])
    assert "hello from tether-test-web" in ctr.out(cid, "cat", "/vol/www/index.html")
    assert "hello from tether-test-web" in ctr.out(cid, "cat", "/sub/index.html")
    assert ctr.exec(cid, "touch", "/vol/new").exit_code != 0  # read-only
    assert ctr.exec(cid, "/vol/bin/busybox", "true").exit_code == 0  # not noexec (critest)
    st = ctr.status(cid).status
    refs = {m.container_path: m.image.image_ref for m in st.mounts}
    assert refs == {"/vol": web_id, "/sub": web_id}
    # in use while the container exists
    with pytest.raises(grpc.RpcError) as e:
        ctr.env.cri.images.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=web_id)))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    mounts_before = Path("/proc/self/mountinfo").read_text().count("imagevols")
    assert mounts_before >= 2
    ctr.rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=0))
    ctr.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid))
    assert "imagevols" not in Path("/proc/self/mountinfo").read_text()
    ctr.env.cri.images.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=web_id)))


@pytest.mark.parametrize("mount,field", [
    (pb.Mount(container_path="/v", readonly=False, image=pb.ImageSpec(image="WEB")),
     "readonly"),
    (pb.Mount(container_path="/v", readonly=True, image=pb.ImageSpec(image="WEB"),
              image_sub_path="nope"), "image_sub_path"),
    (pb.Mount(container_path="/v", readonly=True, image=pb.ImageSpec(image="WEB"),
              image_sub_path="../../etc"), "image_sub_path"),
    (pb.Mount(container_path="/v", readonly=True, image=pb.ImageSpec(image="WEB"),
              image_sub_path="/etc"), "image_sub_path"),
    (pb.Mount(container_path="/v", readonly=True,
              image=pb.ImageSpec(image="127.0.0.1:1/not-pulled:1")), "not found"),
])
def test_bad_image_volumes_are_refused_and_leave_nothing(
        ctr: Ctr, registry: ImageRegistry, mount: pb.Mount, field: str) -> None:  # noqa: F811
    web = registry.ref("web")
    _pull(ctr, web)
    if mount.image.image == "WEB":
        mount.image.image = web
    sid, pcfg = ctr.pod()
    with pytest.raises(grpc.RpcError) as e:
        ctr.create(sid, pcfg, "bad", ["true"], mounts=[mount])
    assert e.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
    assert field in (e.value.details() or "")
    assert not ctr.rt.ListContainers(pb.ListContainersRequest()).containers
    assert "imagevols" not in Path("/proc/self/mountinfo").read_text()


def test_recursive_read_only_mount(ctr: Ctr, tmp_path: Path) -> None:  # noqa: F811
    st = ctr.rt.Status(pb.StatusRequest())
    feats = {h.name: h.features for h in st.runtime_handlers}
    assert feats[ctr.handler].recursive_read_only_mounts  # runc 1.1 and crun 1.8 know "rro"
    assert st.features.supplemental_groups_policy
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(src / "sub")], check=True)
    try:
        sid, pcfg = ctr.pod()
        ro = pb.Mount(container_path="/ro", host_path=str(src), readonly=True)
        rro = pb.Mount(container_path="/rro", host_path=str(src), readonly=True,
                       recursive_read_only=True)
        cid = ctr.run(sid, pcfg, "main", ["sleep", "600"], mounts=[ro, rro])
        assert ctr.exec(cid, "touch", "/ro/sub/x").exit_code == 0  # plain ro: not recursive
        assert ctr.exec(cid, "touch", "/rro/sub/y").exit_code != 0
        for bad in (pb.Mount(container_path="/x", host_path=str(src), readonly=False,
                             recursive_read_only=True),
                    pb.Mount(container_path="/x", host_path=str(src), readonly=True,
                             recursive_read_only=True,
                             propagation=pb.PROPAGATION_HOST_TO_CONTAINER)):
            with pytest.raises(grpc.RpcError) as e:
                ctr.create(sid, pcfg, "bad", ["true"], mounts=[bad])
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "recursive_read_only" in (e.value.details() or "")
        ctr.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid), timeout=60)
    finally:
        subprocess.run(["umount", str(src / "sub")], check=False)


def test_status_user_image_id_and_supplemental_groups_policy(
        ctr: Ctr, registry: ImageRegistry) -> None:  # noqa: F811
    # the "user" image: alice (1000) is in group staff (50) in its /etc/group
    ref = registry.ref("user")
    image_id = _pull(ctr, ref)
    sid, pcfg = ctr.pod()

    def run(name: str, policy: int) -> str:
        cfg = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name), image=pb.ImageSpec(image=ref),
            command=["sleep", "600"], log_path=f"{name}.log",
            linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
                run_as_user=pb.Int64Value(value=1000), supplemental_groups=[1234],
                supplemental_groups_policy=policy)))
        cid = ctr.rt.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=sid, config=cfg, sandbox_config=pcfg)).container_id
        ctr.rt.StartContainer(pb.StartContainerRequest(container_id=cid))
        return cid

    merge, strict = run("merge", pb.Merge), run("strict", pb.Strict)
    for cid, groups in ((merge, [50, 1000, 1234]), (strict, [1000, 1234])):
        st = ctr.status(cid).status
        assert st.image_id == image_id
        assert (st.user.linux.uid, st.user.linux.gid) == (1000, 1000)
        assert sorted(st.user.linux.supplemental_groups) == groups
        assert sorted(int(g) for g in ctr.out(cid, "id", "-G").split()) == groups
    listed = {c.id: c.image_id
              for c in ctr.rt.ListContainers(pb.ListContainersRequest()).containers}
    assert listed == {merge: image_id, strict: image_id}


def test_cri_metrics(ctr: Ctr) -> None:  # noqa: F811
    descs = ctr.rt.ListMetricDescriptors(pb.ListMetricDescriptorsRequest()).descriptors
    keys = {d.name: list(d.label_keys) for d in descs}
    assert all(d.help for d in descs)
    for name in ("container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
                 "container_network_receive_bytes_total", "container_fs_usage_bytes",
                 "container_processes", "container_spec_memory_limit_bytes"):
        assert name in keys
    sid, pcfg = ctr.pod()
    cid = ctr.run(sid, pcfg, "main", ["sh", "-c", "head -c 20000000 /dev/zero > /tmp/f; "
                                                  "sleep 600"],
                  linux=pb.LinuxContainerConfig(resources=pb.LinuxContainerResources(
                      memory_limit_in_bytes=256 << 20, cpu_shares=512)))
    time.sleep(1)
    resp = ctr.rt.ListPodSandboxMetrics(pb.ListPodSandboxMetricsRequest())
    pm = next(p for p in resp.pod_metrics if p.pod_sandbox_id == sid)
    values = {m.name: m for m in pm.container_metrics[0].metrics}
    assert pm.container_metrics[0].container_id == cid
    for m in [*pm.metrics, *pm.container_metrics[0].metrics]:
        assert len(m.label_values) == len(keys[m.name]), m.name
    assert values["container_spec_memory_limit_bytes"].value.value == 256 << 20
    assert values["container_spec_cpu_shares"].value.value == 512
    assert values["container_memory_usage_bytes"].value.value > 10_000_000  # the file's page cache
    assert values["container_processes"].value.value >= 1
    assert values["container_fs_usage_bytes"].label_values[:1] == [cid]
    nets = {m.label_values[-1] for m in pm.metrics
            if m.name == "container_network_receive_bytes_total"}
    assert "eth0" in nets
    stream = list(ctr.rt.StreamPodSandboxMetrics(pb.StreamPodSandboxMetricsRequest()))
    assert sid in {p.pod_sandbox_id for s in stream for p in s.pod_sandbox_metrics}


def test_container_events_stream(ctr: Ctr) -> None:  # noqa: F811
    """GetContainerEvents (evented PLEG): created, started, stopped, deleted, in order, each
    with the pod's status and the containers' statuses of that moment."""
    import threading

    stream = ctr.rt.GetContainerEvents(pb.GetEventsRequest())
    got: list[pb.ContainerEventResponse] = []

    def read() -> None:
        try:
            for ev in stream:
                got.append(ev)
        except grpc.RpcError:
            pass  # cancelled at the end

    th = threading.Thread(target=read)
    th.start()
    try:
        sid, pcfg = ctr.pod()
        time.sleep(0.2)  # the subscription is in place
        cid = ctr.run(sid, pcfg, "main", ["sh", "-c", "exit 7"])
        ctr.wait_exit(cid)
        ctr.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid))
        deadline = time.monotonic() + 10
        while len([e for e in got if e.container_id == cid]) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stream.cancel()
        th.join(10)
    mine = [e for e in got if e.container_id == cid]
    assert [e.container_event_type for e in mine] == [
        pb.CONTAINER_CREATED_EVENT, pb.CONTAINER_STARTED_EVENT, pb.CONTAINER_STOPPED_EVENT,
        pb.CONTAINER_DELETED_EVENT]
    assert all(e.pod_sandbox_status.id == sid for e in mine)
    stopped = mine[2].containers_statuses[0]
    assert (stopped.id, stopped.state, stopped.exit_code) == (cid, pb.CONTAINER_EXITED, 7)
    assert mine[0].containers_statuses[0].state == pb.CONTAINER_CREATED
    assert len(mine[3].containers_statuses) == 0  # gone
    assert mine[0].created_at <= mine[1].created_at <= mine[2].created_at


def test_update_pod_sandbox_resources(ctr: Ctr) -> None:  # noqa: F811
    """In-place pod resize: the limits land on the pod's own cgroup (the kubelet gives each
    pod a parent of its own); below current usage, or for a pod without one, refused."""
    from podsandbox import cgroups

    lay = cgroups.layout()
    parent = f"/tetherresize{os.getpid()}{ctr.handler}"
    sid, pcfg = ctr.pod("resize", cgroup_parent=parent)
    cid = ctr.run(sid, pcfg, "main", ["sh", "-c", "head -c 30000000 /dev/zero > /tmp/f; "
                                                  "sleep 600"])
    time.sleep(1)
    rel = parent.strip("/")

    def read(controller: str, v1_file: str, v2_file: str) -> str:
        v1 = dict(lay.v1)
        base = os.path.join(v1[controller], rel) if controller in v1 else \
            os.path.join(lay.v2 or "", rel)
        return Path(base, v1_file if controller in v1 else v2_file).read_text().strip()

    res = pb.LinuxContainerResources(memory_limit_in_bytes=256 << 20, cpu_shares=512,
                                     cpu_quota=50000, cpu_period=100000)
    ctr.rt.UpdatePodSandboxResources(pb.UpdatePodSandboxResourcesRequest(
        pod_sandbox_id=sid, resources=res))
    assert int(read("memory", "memory.limit_in_bytes", "memory.max")) == 256 << 20
    shares = read("cpu", "cpu.shares", "cpu.weight")
    assert shares == ("512" if "cpu" in dict(lay.v1) else str(cgroups.shares_to_weight(512)))
    if "cpu" in dict(lay.v1):
        assert read("cpu", "cpu.cfs_quota_us", "") == "50000"
    with pytest.raises(grpc.RpcError) as e:  # the page cache of /tmp/f alone is ~30 MB
        ctr.rt.UpdatePodSandboxResources(pb.UpdatePodSandboxResourcesRequest(
            pod_sandbox_id=sid, resources=pb.LinuxContainerResources(
                memory_limit_in_bytes=16 << 20)))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "below what the pod uses now" in (e.value.details() or "")
    assert int(read("memory", "memory.limit_in_bytes", "memory.max")) == 256 << 20
    with pytest.raises(grpc.RpcError) as e:
        ctr.rt.UpdatePodSandboxResources(pb.UpdatePodSandboxResourcesRequest(
            pod_sandbox_id=sid, resources=pb.LinuxContainerResources(cpu_period=1)))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ctr.status(cid).status.state == pb.CONTAINER_RUNNING
    shared, _ = ctr.pod("shared")  # in Tether's default parent, with other pods
    with pytest.raises(grpc.RpcError) as e:
        ctr.rt.UpdatePodSandboxResources(pb.UpdatePodSandboxResourcesRequest(
            pod_sandbox_id=shared, resources=res))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    ctr.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid), timeout=60)
    assert not any(os.path.exists(os.path.join(m, rel)) for m in lay.mountpoints())
