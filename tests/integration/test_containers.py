"""Containers through the CRI with real conmon, runc and crun, in real pods: what the
containers see, what the kubelet gets back, and what is left on the node."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from shim.containers.logs import parse_line
from shim.cri import api_pb2 as pb
from tests.integration.test_sandbox import Env, pod_config, start_env, stop_env
from tests.rig.images import ImageRegistry

HANDLERS = ["runc", "crun"]


@dataclass
class Ctr:
    env: Env
    handler: str
    busybox: str
    log_dir: Path

    @property
    def rt(self) -> Any:
        return self.env.cri.runtime

    def pod(self, name: str = "pod", **kw: Any) -> tuple[str, pb.PodSandboxConfig]:
        cfg = pod_config(name, **kw)
        cfg.log_directory = str(self.log_dir / name)
        sid = self.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg,
                                                            runtime_handler=self.handler),
                                    timeout=60).pod_sandbox_id
        return sid, cfg

    def create(self, sid: str, pod_cfg: pb.PodSandboxConfig, name: str, command: list[str],
               **kw: Any) -> str:
        cfg = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name), image=pb.ImageSpec(image=self.busybox),
            command=command, log_path=f"{name}/0.log", **kw)
        return self.rt.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=sid, config=cfg, sandbox_config=pod_cfg), timeout=60).container_id

    def run(self, sid: str, pod_cfg: pb.PodSandboxConfig, name: str, command: list[str],
            **kw: Any) -> str:
        cid = self.create(sid, pod_cfg, name, command, **kw)
        self.rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=60)
        return cid

    def status(self, cid: str, verbose: bool = False) -> pb.ContainerStatusResponse:
        return self.rt.ContainerStatus(pb.ContainerStatusRequest(container_id=cid,
                                                                 verbose=verbose))

    def wait_exit(self, cid: str, timeout: float = 20) -> pb.ContainerStatus:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.status(cid).status
            if st.state == pb.CONTAINER_EXITED:
                return st
            time.sleep(0.05)
        raise AssertionError(f"container {cid} did not exit: {self.status(cid).status}")

    def exec(self, cid: str, *cmd: str, timeout: int = 10) -> pb.ExecSyncResponse:
        return self.rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=list(cmd),
                                                   timeout=timeout), timeout=timeout + 20)

    def out(self, cid: str, *cmd: str) -> str:
        r = self.exec(cid, *cmd)
        assert r.exit_code == 0, r.stderr
        return r.stdout.decode().strip()


def start_ctr(base: Path, registry: ImageRegistry, handler: str, extra_config: str = "",
              driver: str = "cgroupfs") -> Ctr:
    """A daemon (``extra_config`` appended to its config) with a bridge network and the
    test registry's busybox pulled; ``stop_env(c.env)`` ends it."""
    env = start_env(base, driver=driver, extra_config=(
        f'[images]\ninsecure_registries = ["{registry.host}"]\n' + extra_config))
    env.conflist([env.bridge(), {"type": "loopback"}])
    ref = registry.ref("busybox")
    env.cri.images.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref)), timeout=120)
    return Ctr(env, handler, ref, base / "logs")


@pytest.fixture(params=HANDLERS)
def ctr(request: pytest.FixtureRequest, tmp_path: Path, registry: ImageRegistry) -> Iterator[Ctr]:
    c = start_ctr(tmp_path, registry, request.param)
    yield c
    stop_env(c.env)


def log_lines(path: str) -> list[tuple[str, bool, str]]:
    out = []
    for line in Path(path).read_text().splitlines():
        parsed = parse_line(line)
        assert parsed is not None, f"not CRI log format: {line!r}"
        out.append((parsed.stream, parsed.partial, parsed.text))
    return out


def test_exit_code_reason_timestamps_and_logs(ctr: Ctr) -> None:
    sid, pcfg = ctr.pod()
    cid = ctr.run(sid, pcfg, "job", ["sh", "-c", "echo out; echo err >&2; exit 3"])
    st = ctr.wait_exit(cid)
    assert st.exit_code == 3
    assert st.reason == "Error"
    assert 0 < st.created_at <= st.started_at <= st.finished_at
    assert st.log_path == str(ctr.log_dir / "pod" / "job" / "0.log")
    lines = log_lines(st.log_path)
    assert ("stdout", False, "out") in lines
    assert ("stderr", False, "err") in lines
    ok = ctr.run(sid, pcfg, "ok", ["true"])
    st = ctr.wait_exit(ok)
    assert (st.exit_code, st.reason) == (0, "Completed")


def test_partial_lines_are_marked_p(ctr: Ctr) -> None:
    sid, pcfg = ctr.pod()
    # A line longer than conmon's buffer is split into P fragments ending with an F.
    cid = ctr.run(sid, pcfg, "long", ["sh", "-c", "head -c 20000 /dev/zero | tr '\\0' a; echo"])
    st = ctr.wait_exit(cid)
    lines = log_lines(st.log_path)
    assert any(p for _, p, _ in lines), lines[:3]
    assert lines[-1][1] is False
    assert "".join(t for _, _, t in lines) == "a" * 20000


def test_missing_binary_refused_at_create_and_one_that_cannot_run(ctr: Ctr) -> None:
    sid, pcfg = ctr.pod()
    for cmd in (["/no/such/binary"], ["no-such-tool"], [""]):
        with pytest.raises(grpc.RpcError) as e:
            ctr.create(sid, pcfg, "missing", cmd)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, cmd
        assert "config.command[0]" in (e.value.details() or ""), cmd
    assert not ctr.rt.ListContainers(pb.ListContainersRequest()).containers
    # there, but not executable: only the runtime can tell
    cid = ctr.create(sid, pcfg, "broken", ["/etc/passwd"])
    with pytest.raises(grpc.RpcError):
        ctr.rt.StartContainer(pb.StartContainerRequest(container_id=cid))
    st = ctr.status(cid).status
    assert st.state == pb.CONTAINER_EXITED
    assert st.reason == "ContainerCannotRun"
    assert "permission denied" in st.message.lower()


def test_stop_with_stop_signal_then_kill(ctr: Ctr) -> None:
    sid, pcfg = ctr.pod()
    trap = "trap 'echo got USR1; exit 7' USR1; while true; do sleep 0.1; done"
    cid = ctr.run(sid, pcfg, "trap", ["sh", "-c", trap], stop_signal=pb.SIGNAL_SIGUSR1)
    time.sleep(0.3)
    ctr.rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=10))
    st = ctr.status(cid).status
    assert st.state == pb.CONTAINER_EXITED and st.exit_code == 7
    assert ("stdout", False, "got USR1") in log_lines(st.log_path)
    # timeout 0: SIGKILL at once
    k = ctr.run(sid, pcfg, "sleeper", ["sleep", "600"])
    ctr.rt.StopContainer(pb.StopContainerRequest(container_id=k, timeout=0))
    st = ctr.status(k).status
    assert (st.state, st.exit_code) == (pb.CONTAINER_EXITED, 137)
    ctr.rt.StopContainer(pb.StopContainerRequest(container_id=k, timeout=0))  # idempotent
    ctr.rt.StopContainer(pb.StopContainerRequest(container_id="0" * 64, timeout=0))


def test_exec_sync_output_exit_code_timeout(ctr: Ctr) -> None:
    sid, pcfg = ctr.pod()
    cid = ctr.run(sid, pcfg, "main", ["sleep", "600"], envs=[pb.KeyValue(key="GREETING",
                                                                          value=b"hi")])
    r = ctr.exec(cid, "sh", "-c", "echo $GREETING; echo oops >&2; exit 4")
    assert (r.stdout, r.stderr, r.exit_code) == (b"hi\n", b"oops\n", 4)
    start = time.monotonic()
    with pytest.raises(grpc.RpcError) as e:
        ctr.exec(cid, "sleep", "100", timeout=1)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "timed out" in (e.value.details() or "")
    assert time.monotonic() - start < 10
    # The timed-out sleep is gone, not a zombie.
    assert "sleep 100" not in ctr.out(cid, "ps", "-o", "pid,stat,args")
    big = ctr.exec(cid, "sh", "-c", "head -c 3000000 /dev/zero")
    assert len(big.stdout) == 3000000
    ctr.rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=0))
    with pytest.raises(grpc.RpcError) as e:
        ctr.exec(cid, "true")
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def _ns(ctr: Ctr, cid: str, kind: str) -> str:
    return ctr.out(cid, "readlink", f"/proc/self/ns/{kind}")


def test_containers_of_a_pod_share_net_ipc_uts(ctr: Ctr) -> None:
    sid, pcfg = ctr.pod("shared", hostname="shared-host")
    a = ctr.run(sid, pcfg, "a", ["sh", "-c", "nc -l -p 7777 -e echo hello-from-a; sleep 600"])
    b = ctr.run(sid, pcfg, "b", ["sleep", "600"])
    _, info = ctr.env.status(sid)
    for kind in ("net", "ipc", "uts"):
        pinned = f"{kind}:[{info['namespaces'][kind]['inode']}]"
        assert _ns(ctr, a, kind) == _ns(ctr, b, kind) == pinned
    assert ctr.out(a, "hostname") == ctr.out(b, "hostname") == "shared-host"
    time.sleep(0.3)
    assert ctr.out(b, "nc", "127.0.0.1", "7777") == "hello-from-a"
    ctr.out(a, "sh", "-c", "echo shm-data > /dev/shm/x")
    assert ctr.out(b, "cat", "/dev/shm/x") == "shm-data"
    # Another pod sees none of it.
    sid2, pcfg2 = ctr.pod("other")
    c = ctr.run(sid2, pcfg2, "c", ["sleep", "600"])
    for kind in ("net", "ipc", "uts"):
        assert _ns(ctr, c, kind) != _ns(ctr, a, kind)
    assert ctr.exec(c, "cat", "/dev/shm/x").exit_code != 0


def test_pid_namespace_modes(ctr: Ctr) -> None:
    sid, pcfg = ctr.pod("pidpod", pid=pb.POD)
    a = ctr.run(sid, pcfg, "a", ["sleep", "601"])
    ctr.run(sid, pcfg, "b", ["sleep", "602"])
    ps = ctr.out(a, "ps", "-o", "pid,args")
    assert "sleep 602" in ps
    pid1 = ctr.out(a, "cat", "/proc/1/comm")
    assert pid1 == "catatonit"
    sid2, pcfg2 = ctr.pod("ctrpod", pid=pb.CONTAINER)
    c = ctr.run(sid2, pcfg2, "c", ["sleep", "603"])
    d = ctr.run(sid2, pcfg2, "d", ["sleep", "604"])
    assert "sleep 604" not in ctr.out(c, "ps", "-o", "pid,args")
    assert ctr.out(c, "cat", "/proc/1/cmdline").startswith("sleep")
    # TARGET: a debug container in c's PID namespace sees c's processes.
    t = ctr.run(sid2, pcfg2, "debug", ["sleep", "605"], linux=pb.LinuxContainerConfig(
        security_context=pb.LinuxContainerSecurityContext(namespace_options=pb.NamespaceOption(
            pid=pb.TARGET, target_id=c))))
    ps = ctr.out(t, "ps", "-o", "pid,args")
    assert "sleep 603" in ps and "sleep 604" not in ps
    del d


def test_host_network_pod_sees_the_node(ctr: Ctr) -> None:
    sid, pcfg = ctr.pod("hostnet", network=pb.NODE)
    cid = ctr.run(sid, pcfg, "h", ["sleep", "600"])
    assert _ns(ctr, cid, "net") == f"net:[{os.stat('/proc/self/ns/net').st_ino}]"
    links = ctr.out(cid, "ip", "-o", "link")
    assert "tp0" in links  # the test namespace's bridge


def test_log_reopen_after_rotation(ctr: Ctr) -> None:
    sid, pcfg = ctr.pod()
    cid = ctr.run(sid, pcfg, "talker", ["sh", "-c",
                                        "i=0; while true; do echo line$i; i=$((i+1)); "
                                        "sleep 0.05; done"])
    path = ctr.status(cid).status.log_path
    time.sleep(0.5)
    os.rename(path, path + ".1")
    ctr.rt.ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=cid))
    time.sleep(0.5)
    old = [t for _, _, t in log_lines(path + ".1")]
    new = [t for _, _, t in log_lines(path)]
    assert new, "nothing written to the reopened log"
    # No line lost across the rotation: the numbers continue.
    last_old = int(old[-1].removeprefix("line"))
    first_new = int(new[0].removeprefix("line"))
    assert first_new == last_old + 1
    ctr.rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=0))
    with pytest.raises(grpc.RpcError) as e:
        ctr.rt.ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=cid))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_status_list_and_remove_leave_nothing(ctr: Ctr) -> None:
    sid, pcfg = ctr.pod()
    cid = ctr.run(sid, pcfg, "x", ["sleep", "600"], labels={"app": "x"})
    r = ctr.status(cid, verbose=True)
    info = json.loads(r.info["info"])
    assert info["pid"] > 0 and info["sandboxID"] == sid
    assert info["runtimeSpec"]["ociVersion"] == "1.0.2"
    assert r.status.image.image == ctr.busybox and r.status.image_ref.startswith("sha256:")
    items = ctr.rt.ListContainers(pb.ListContainersRequest(filter=pb.ContainerFilter(
        label_selector={"app": "x"}))).containers
    assert [c.id for c in items] == [cid]
    running = pb.ContainerStateValue(state=pb.CONTAINER_RUNNING)
    assert len(ctr.rt.ListContainers(pb.ListContainersRequest(
        filter=pb.ContainerFilter(state=running, pod_sandbox_id=sid[:10]))).containers) == 1
    streamed = [c.id for r in ctr.rt.StreamContainers(pb.StreamContainersRequest())
                for c in r.containers]
    assert streamed == [cid]
    rootfs = info["rootfs"]
    conmon_pid = info["conmonPid"]
    ctr.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid))  # running: stops first
    assert rootfs not in Path("/proc/self/mountinfo").read_text()
    assert not os.path.exists(info["bundle"])
    time.sleep(0.2)
    with contextlib.suppress(FileNotFoundError):
        assert Path(f"/proc/{conmon_pid}/stat").read_text().split()[2] in ("Z", "X")
    with pytest.raises(grpc.RpcError) as e:
        ctr.status(cid)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    ctr.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid))  # unknown: fine


def test_pod_removal_removes_its_containers(ctr: Ctr) -> None:
    sid, pcfg = ctr.pod()
    ctr.run(sid, pcfg, "x", ["sleep", "600"])
    ctr.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid), timeout=60)
    assert ctr.rt.ListContainers(pb.ListContainersRequest()).containers == []


def test_daemon_restart_keeps_containers(ctr: Ctr) -> None:
    sid, pcfg = ctr.pod()
    keep = ctr.run(sid, pcfg, "keep", ["sleep", "600"])
    quit_ = ctr.run(sid, pcfg, "quit", ["sh", "-c", "sleep 1; exit 5"])
    ctr.env.daemon.kill()
    time.sleep(1.5)  # `quit` exits while the daemon is down
    ctr.env.daemon.start()
    ctr.env.cri = ctr.env.daemon.client()
    st = ctr.status(keep).status
    assert st.state == pb.CONTAINER_RUNNING
    q = ctr.status(quit_).status
    assert (q.state, q.exit_code, q.reason) == (pb.CONTAINER_EXITED, 5, "Error")
    assert q.finished_at > q.started_at
    assert ctr.out(keep, "echo", "alive") == "alive"
    ctr.rt.StopContainer(pb.StopContainerRequest(container_id=keep, timeout=0))
    assert ctr.status(keep).status.exit_code == 137
    ctr.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=keep))


def test_create_in_a_stopped_pod_is_refused(ctr: Ctr) -> None:
    sid, pcfg = ctr.pod()
    ctr.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid), timeout=60)
    with pytest.raises(grpc.RpcError) as e:
        ctr.create(sid, pcfg, "late", ["true"])
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as e:
        cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="x"),
                                 image=pb.ImageSpec(image="nope:latest"))
        ctr.rt.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=sid, config=cfg))
    assert e.value.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND)


def test_a_name_is_taken_once_and_a_refused_create_leaves_it_free(ctr: Ctr) -> None:
    sid, pcfg = ctr.pod()

    def create(log_path: str) -> str:
        cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c", attempt=1),
                                 image=pb.ImageSpec(image=ctr.busybox), command=["true"],
                                 log_path=log_path)
        return ctr.rt.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=sid, config=cfg, sandbox_config=pcfg), timeout=60).container_id

    with pytest.raises(grpc.RpcError) as e:
        create(".")  # the pod's log directory itself
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "config.log_path" in (e.value.details() or "")
    cid = create("c/1.log")
    with pytest.raises(grpc.RpcError) as e:
        create("c/1b.log")
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert cid in (e.value.details() or "")
    ctr.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=60)
    assert create("c/1.log") != cid  # removed: the name is free again


def test_termination_message_is_the_kubelets_to_read(ctr: Ctr, tmp_path: Path) -> None:
    """The kubelet reads the file it mounted at terminationMessagePath and appends it to
    ContainerStatus.message: Tether must leave that empty (else "done: done"), and it never
    follows a path the container controls (a link to a host file must not be read)."""
    sid, pcfg = ctr.pod()
    host_file = tmp_path / "termination-log"
    host_file.write_text("")
    cid = ctr.run(sid, pcfg, "msg", ["sh", "-c", "echo -n 'all done' > /dev/termination-log"],
                  mounts=[pb.Mount(container_path="/dev/termination-log",
                                   host_path=str(host_file))])
    st = ctr.wait_exit(cid)
    assert (st.reason, st.message) == ("Completed", "")
    assert host_file.read_text() == "all done"  # what the kubelet will read
    secret = tmp_path / "host-secret"
    secret.write_text("not for containers")
    evil = ctr.run(sid, pcfg, "evil", ["sh", "-c", f"ln -s {secret} /tmp/msg; exit 1"],
                   annotations={"io.kubernetes.container.terminationMessagePath": "/tmp/msg",
                                "io.kubernetes.container.terminationMessagePolicy":
                                "FallbackToLogsOnError"})
    st = ctr.wait_exit(evil)
    assert (st.reason, st.message) == ("Error", "")


def test_absent_mount_source_made_or_refused(ctr: Ctr, tmp_path: Path) -> None:
    sid, pcfg = ctr.pod()
    made = tmp_path / "made" / "here"
    cid = ctr.run(sid, pcfg, "mk", ["sh", "-c", "echo hi > /data/f"],
                  mounts=[pb.Mount(container_path="/data", host_path=str(made))])
    assert ctr.wait_exit(cid).exit_code == 0
    assert (made / "f").read_text() == "hi\n"


def test_absent_mount_source_listed_for_rejection_is_refused(
    tmp_path: Path, registry: ImageRegistry
) -> None:
    missing = tmp_path / "must-exist"
    dropins = tmp_path / "env" / "t" / "tether.d"
    dropins.mkdir(parents=True)
    (dropins / "50-reject.toml").write_text(
        f'[runtime]\nabsent_mount_sources_to_reject = ["{missing}"]\n')
    c = start_ctr(tmp_path / "env", registry, "runc")
    env = c.env
    try:
        sid, pcfg = c.pod()
        with pytest.raises(grpc.RpcError) as e:
            c.create(sid, pcfg, "rej", ["true"],
                     mounts=[pb.Mount(container_path="/data", host_path=str(missing))])
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "mounts[0].host_path" in (e.value.details() or "")
        assert not missing.exists()
        assert c.rt.ListContainers(pb.ListContainersRequest()).containers == []
    finally:
        stop_env(env)
