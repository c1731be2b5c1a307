"""Hostile CRI requests (the hardening issue's findings): each gets InvalidArgument naming
the field at the RPC edge, the daemon keeps answering, and nothing is left behind or read
from where it must not be."""

from __future__ import annotations

import io
import os
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from shim.cri import api_pb2 as pb
from tests.integration.malicious_layers import push_layout, write_layout
from tests.integration.test_containers import Ctr, ctr  # noqa: F401
from tests.rig.images import ImageRegistry


def _refused(call: Any, field: str) -> None:
    with pytest.raises(grpc.RpcError) as e:
        call()
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (e.value.code(), e.value.details())
    assert field in (e.value.details() or ""), e.value.details()


@pytest.mark.parametrize(("kw", "field"), [
    ({"mounts": [pb.Mount(container_path="/x", host_path="relative/dir")]},
     "mounts[0].host_path"),
    ({"stop_signal": 999}, "config.stop_signal"),
    ({"envs": [pb.KeyValue(key="A", value=b"x\0y")]}, "config.envs[0].value"),
    ({"envs": [pb.KeyValue(key="A=B", value=b"x")]}, "config.envs[0].key"),
    ({"linux": pb.LinuxContainerConfig(resources=pb.LinuxContainerResources(
        cpuset_cpus="0-99999"))}, "cpuset_cpus"),
    ({"linux": pb.LinuxContainerConfig(resources=pb.LinuxContainerResources(
        cpu_period=1, cpu_quota=1))}, "cpu_period"),
])
def test_bad_container_configs(ctr: Ctr, kw: dict[str, Any], field: str) -> None:  # noqa: F811
    sid, pcfg = ctr.pod()
    cwd_before = set(os.listdir("."))
    _refused(lambda: ctr.create(sid, pcfg, "bad", ["sleep", "1"], **kw), field)
    assert not ctr.rt.ListContainers(pb.ListContainersRequest()).containers
    assert set(os.listdir(".")) == cwd_before  # nothing made relative to anyone's cwd


def test_bad_commands(ctr: Ctr) -> None:  # noqa: F811
    sid, pcfg = ctr.pod()
    _refused(lambda: ctr.create(sid, pcfg, "c", ["echo", "a\0b"]), "config.command[1]")
    _refused(lambda: ctr.create(sid, pcfg, "c", ["nonexistent-binary"]), "config.command[0]")


@pytest.mark.parametrize(("kw", "field"), [
    ({"ports": [pb.PortMapping(container_port=80, protocol=99)]}, "protocol"),
    ({"ports": [pb.PortMapping(container_port=80, host_port=8080),
                pb.PortMapping(container_port=81, host_port=8080)]}, "already mapped"),
    ({"dns": pb.DNSConfig(searches=["svc\nnameserver 6.6.6.6"])}, "dns_config.searches[0]"),
    ({"dns": pb.DNSConfig(options=["ndots:5\nsearch evil"])}, "dns_config.options[0]"),
    ({"annotations": {"kubernetes.io/ingress-bandwidth": "99999999999999999999999E"}},
     "out of range"),
])
def test_bad_pod_configs(ctr: Ctr, kw: dict[str, Any], field: str) -> None:  # noqa: F811
    _refused(lambda: ctr.pod("badpod", **kw), field)
    assert not ctr.rt.ListPodSandbox(pb.ListPodSandboxRequest()).items


def test_relative_log_directory(ctr: Ctr) -> None:  # noqa: F811
    from tests.integration.test_sandbox import pod_config
    cfg = pod_config("rel")
    cfg.log_directory = "logs/here"
    _refused(lambda: ctr.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=60),
             "config.log_directory")


def test_fifo_or_huge_seccomp_profile_never_blocks_the_daemon(
        ctr: Ctr, tmp_path: Path) -> None:  # noqa: F811
    fifo = tmp_path / "profile.json"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.json"
    huge.write_text("[" + " " * (2 << 20) + "]")
    sid, pcfg = ctr.pod()
    answers: list[float] = []
    stop = threading.Event()

    def poll() -> None:  # the daemon must keep answering meanwhile
        while not stop.is_set():
            t = time.monotonic()
            ctr.rt.Version(pb.VersionRequest(), timeout=5)
            answers.append(time.monotonic() - t)
            time.sleep(0.05)

    th = threading.Thread(target=poll)
    th.start()
    try:
        for path, why in ((fifo, "not a regular file"), (huge, "limit")):
            sc = pb.LinuxContainerSecurityContext(seccomp=pb.SecurityProfile(
                profile_type=pb.SecurityProfile.Localhost, localhost_ref=str(path)))
            _refused(lambda sc=sc: ctr.create(sid, pcfg, "s", ["sleep", "1"],
                                              linux=pb.LinuxContainerConfig(security_context=sc)),
                     why)
    finally:
        stop.set()
        th.join()
    assert answers and max(answers) < 2


def _image_with(tmp: Path, registry: ImageRegistry, name: str,
                members: list[tarfile.TarInfo]) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("bin", "etc"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(ti)
        ti = tarfile.TarInfo("bin/true")
        ti.size, ti.mode = 2, 0o755
        tar.addfile(ti, io.BytesIO(b"#!"))
        for m in members:
            tar.addfile(m)
    layout = tmp / name
    write_layout(layout, [buf.getvalue()])
    ref = f"{registry.host}/hostile-etc/{name}:latest"
    push_layout(layout, ref)
    return ref


def test_image_passwd_is_never_read_from_the_host_or_a_fifo(
        ctr: Ctr, registry: ImageRegistry, tmp_path: Path) -> None:  # noqa: F811
    host_passwd = tmp_path / "host-passwd"
    host_passwd.write_text("hostuser:x:4242:4242::/:/bin/sh\n")
    link = tarfile.TarInfo("etc/passwd")
    link.type, link.linkname = tarfile.SYMTYPE, str(host_passwd)
    fifo = tarfile.TarInfo("etc/passwd")
    fifo.type, fifo.mode = tarfile.FIFOTYPE, 0o644
    sid, pcfg = ctr.pod()
    for name, member in (("link", link), ("fifo", fifo)):
        ref = _image_with(tmp_path, registry, name, [member])
        ctr.env.cri.images.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref)),
                                     timeout=60)
        cfg = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name), image=pb.ImageSpec(image=ref),
            command=["/bin/true"], linux=pb.LinuxContainerConfig(
                security_context=pb.LinuxContainerSecurityContext(run_as_username="hostuser")))
        t = time.monotonic()
        _refused(lambda cfg=cfg: ctr.rt.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=sid, config=cfg, sandbox_config=pcfg), timeout=30),
            "run_as_username")
        assert time.monotonic() - t < 10


def test_undecodable_bodies_are_invalid_argument(ctr: Ctr) -> None:  # noqa: F811
    inner = b"\x12\x02\xff\xfe"  # PodSandboxConfig.hostname = bytes that are not UTF-8
    body = b"\x0a" + bytes([len(inner)]) + inner  # RunPodSandboxRequest.config
    ch = grpc.insecure_channel(f"unix://{ctr.env.daemon.socket}")
    try:
        for method, data in (("RuntimeService/RunPodSandbox", body),
                             ("RuntimeService/ListContainers", b"\x0a\x05\x0a\x03\xc3\x28x"),
                             ("ImageService/ListImages", b"\xff\xff\xff")):
            call = ch.unary_unary(f"/runtime.v1.{method}")
            with pytest.raises(grpc.RpcError) as e:
                call(data, timeout=10)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
            assert "not a valid protobuf message" in (e.value.details() or "")
    finally:
        ch.close()
    assert "Traceback" not in ctr.env.daemon.logs()


def test_credentials_with_line_breaks(ctr: Ctr, registry: ImageRegistry) -> None:  # noqa: F811
    for auth in (pb.AuthConfig(registry_token="tok\r\nX-Evil: 1"),
                 pb.AuthConfig(username="u", password="p\nq")):
        _refused(lambda auth=auth: ctr.env.cri.images.PullImage(pb.PullImageRequest(
            image=pb.ImageSpec(image=registry.ref("busybox")), auth=auth), timeout=30), "auth.")


def _procs_naming(text: str) -> list[int]:
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if text in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace"):
                    out.append(int(p))
            except OSError:
                continue
    return out


def test_create_and_start_race_stop_and_remove_of_the_pod(ctr: Ctr) -> None:  # noqa: F811
    """CreateContainer+StartContainer against StopPodSandbox/RemovePodSandbox, 200 times:
    a container runs only in a ready pod; a stopped pod has none running; a removed pod
    leaves no container and no process."""
    import concurrent.futures
    import random

    if ctr.handler != "runc":
        pytest.skip("the race is the daemon's, not the runtime's: one handler is enough")
    rng = random.Random(1234)

    def one(i: int) -> str:
        sid, pcfg = ctr.pod(f"race{i}")
        remove = i % 2 == 1
        delay = rng.random() * 0.3
        cid: list[str] = []

        def make() -> None:
            try:
                c = ctr.create(sid, pcfg, "c", ["sleep", "600"])
                cid.append(c)
                ctr.rt.StartContainer(pb.StartContainerRequest(container_id=c), timeout=60)
            except grpc.RpcError as e:
                assert e.code() in (grpc.StatusCode.FAILED_PRECONDITION,
                                    grpc.StatusCode.NOT_FOUND), e.details()

        def end() -> None:
            time.sleep(delay)
            ctr.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid), timeout=60)
            if remove:
                ctr.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid),
                                        timeout=60)

        a, b = threading.Thread(target=make), threading.Thread(target=end)
        a.start(), b.start()
        a.join(), b.join()
        mine = [c for c in ctr.rt.ListContainers(pb.ListContainersRequest()).containers
                if c.pod_sandbox_id == sid]
        if remove:
            assert mine == [], mine
            assert not any(_procs_naming(c) for c in cid)
            return "removed"
        assert all(c.state != pb.CONTAINER_RUNNING for c in mine), mine
        ctr.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid), timeout=60)
        return "stopped"

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        ends = list(pool.map(one, range(200)))
    assert ends.count("removed") == 100
    assert ctr.rt.ListPodSandbox(pb.ListPodSandboxRequest()).items == []
    assert "Traceback" not in ctr.env.daemon.logs()
