"""User-namespaced pods (issue #16), proven from inside containers and from the node, with
runc and crun: the maps, the image's files seen as root's, what a write to a host path and
to the rootfs becomes on the node, no capability over the node's files, idmapped volumes,
Tether's own allocation (annotation), and nothing left behind."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from shim.cri import api_pb2 as pb
from tests.integration.test_containers import Ctr, ctr, start_ctr  # noqa: F401
from tests.integration.test_sandbox import pod_config, stop_env
from tests.rig.images import ImageRegistry

# per handler, so that the two runs never share ids
HOST_IDS = {"runc": 300000, "crun": 400000}
SIZE = 65536


def userns_pod(c: Ctr, name: str, host_id: int, **kw: object) -> tuple[str, pb.PodSandboxConfig]:
    cfg = pod_config(name, **kw)  # type: ignore[arg-type]
    m = [pb.IDMapping(container_id=0, host_id=host_id, length=SIZE)]
    cfg.linux.security_context.namespace_options.userns_options.CopyFrom(
        pb.UserNamespace(mode=pb.POD, uids=m, gids=m))
    cfg.log_directory = str(c.log_dir / name)
    sid = c.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg, runtime_handler=c.handler),
                             timeout=60).pod_sandbox_id
    return sid, cfg


def pod_info(c: Ctr, sid: str) -> dict:  # type: ignore[type-arg]
    r = c.rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid, verbose=True))
    return json.loads(r.info["info"])  # type: ignore[no-any-return]


def host_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


def test_a_pod_of_its_own_ids(ctr: Ctr, tmp_path: Path) -> None:  # noqa: F811
    h = HOST_IDS[ctr.handler]
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    secret = tmp_path / "secret"
    secret.write_text("node only\n")
    secret.chmod(0o600)
    sid, pcfg = userns_pod(ctr, "users", h)
    mounts = [pb.Mount(container_path="/shared", host_path=str(shared)),
              pb.Mount(container_path="/secret", host_path=str(secret), readonly=True)]
    cid = ctr.run(sid, pcfg, "main", ["sleep", "600"], mounts=mounts)
    # the maps, as the kubelet asked
    assert ctr.out(cid, "cat", "/proc/self/uid_map").split() == ["0", str(h), str(SIZE)]
    assert ctr.out(cid, "cat", "/proc/self/gid_map").split() == ["0", str(h), str(SIZE)]
    # the image's files are root's in the pod (idmapped rootfs), and root may write there
    assert ctr.out(cid, "stat", "-c", "%u:%g", "/bin/busybox", "/etc/passwd") == "0:0\n0:0"
    assert ctr.out(cid, "id", "-u") == "0"
    assert ctr.exec(cid, "sh", "-c", "echo new > /etc/new && chown 1000:1000 /etc/new"
                    ).exit_code == 0
    info = json.loads(ctr.status(cid, verbose=True).info["info"])
    upper = Path(info["rootfs"]).parent / "upper"
    # what the pod wrote lands on disk with the node's ids of the pod
    assert (os.stat(upper / "etc" / "new").st_uid, os.stat(upper / "etc" / "new").st_gid) \
        == (h + 1000, h + 1000)
    assert os.stat(upper / "etc").st_uid == h  # copied up: the image's root dir, as h
    # a plain host path: what the pod's root writes is the node's id h
    assert ctr.exec(cid, "touch", "/shared/from-pod").exit_code == 0
    st = os.stat(shared / "from-pod")
    assert (st.st_uid, st.st_gid) == (h, h)
    # the pod's root has every capability, in its own namespace only: not over node files
    cap_eff = int(ctr.out(cid, "sh", "-c", "grep CapEff /proc/self/status").split()[1], 16)
    assert cap_eff & (1 << 1)  # CAP_DAC_OVERRIDE, in the pod's namespace
    denied = ctr.exec(cid, "cat", "/secret")
    assert denied.exit_code != 0 and b"Permission denied" in denied.stderr
    assert ctr.exec(cid, "mknod", "/tmp/sda", "b", "8", "0").exit_code != 0
    # from the node: the container's and the pause-holder's processes run as h
    assert host_uid(info["pid"]) == h
    pinfo = pod_info(ctr, sid)
    assert host_uid(pinfo["pid"]) == h
    user = pinfo["namespaces"]["user"]
    assert user["mode"] == "POD" and user["uidMappings"] == [
        {"container_id": 0, "host_id": h, "length": SIZE}]
    # one user namespace, the pinned one, owns the pod's and the container's processes
    ino = os.stat(f"/proc/{info['pid']}/ns/user").st_ino
    assert ino == user["inode"] == os.stat(f"/proc/{pinfo['pid']}/ns/user").st_ino
    assert ino != os.stat("/proc/self/ns/user").st_ino
    # the status says so too
    opts = ctr.rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid)
                                   ).status.linux.namespaces.options.userns_options
    assert opts.mode == pb.POD and [(m.container_id, m.host_id, m.length) for m in opts.uids] \
        == [(0, h, SIZE)]
    ctr.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
    assert not Path(user["path"]).exists()
    mountinfo = Path("/proc/self/mountinfo").read_text()
    assert user["path"] not in mountinfo and "/idmap" not in mountinfo


def test_an_idmapped_volume_keeps_the_nodes_owners(ctr: Ctr, tmp_path: Path) -> None:  # noqa: F811
    h = HOST_IDS[ctr.handler] + SIZE
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "owned-by-1000").write_text("x")
    os.chown(vol / "owned-by-1000", 1000, 1000)
    sid, pcfg = userns_pod(ctr, "idvol", h)
    m = [pb.IDMapping(container_id=0, host_id=h, length=SIZE)]
    mount = pb.Mount(container_path="/vol", host_path=str(vol), uidMappings=m, gidMappings=m)
    cid = ctr.run(sid, pcfg, "main", ["sleep", "600"], mounts=[mount])
    assert ctr.out(cid, "stat", "-c", "%u:%g", "/vol", "/vol/owned-by-1000") == "0:0\n1000:1000"
    assert ctr.exec(cid, "touch", "/vol/from-pod").exit_code == 0
    assert os.stat(vol / "from-pod").st_uid == 0  # written as the pod's root: the node's 0
    # mappings that are not the pod's are refused, naming the field
    other = [pb.IDMapping(container_id=0, host_id=h + 1, length=SIZE)]
    with pytest.raises(grpc.RpcError) as e:
        ctr.create(sid, pcfg, "other", ["true"], mounts=[pb.Mount(
            container_path="/vol", host_path=str(vol), uidMappings=other, gidMappings=m)])
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "mounts[0].uidMappings" in (e.value.details() or "")
    ctr.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
    assert stat.S_ISDIR(os.stat(vol).st_mode) and (vol / "from-pod").exists()
    assert "/idmapped/" not in Path("/proc/self/mountinfo").read_text()


@pytest.fixture
def auto(tmp_path: Path, registry: ImageRegistry) -> Iterator[Ctr]:
    """A daemon that hands out two blocks of ids to pods that ask by annotation."""
    c = start_ctr(tmp_path, registry, "runc", extra_config=(
        f'[userns]\nauto_first_id = {AUTO_FIRST}\nauto_size = {SIZE}\nauto_count = 2\n'))
    yield c
    stop_env(c.env)


AUTO_FIRST = 600000


def annotated_pod(c: Ctr, name: str) -> tuple[str, pb.PodSandboxConfig]:
    return c.pod(name, annotations={"io.tether.userns-mode": "auto"})


def leftovers(c: Ctr) -> dict[str, list[str]]:
    """Pins, sandbox dirs and container dirs on disk (what a refused pod must not leave)."""
    run, root = c.env.daemon.run_dir, c.env.daemon.root
    return {"pins": sorted(p.name for p in run.glob("ns/*/*")),
            "sandboxes": sorted(p.name for p in run.glob("sandboxes/*")),
            "containers": sorted(p.name for p in root.glob("containers/*"))}


def test_tether_allocates_blocks_by_annotation(auto: Ctr) -> None:
    c = auto
    a, _ = annotated_pod(c, "a")
    b, bcfg = annotated_pod(c, "b")
    blocks = {sid: pod_info(c, sid)["namespaces"]["user"] for sid in (a, b)}
    assert blocks[a]["uidMappings"] == [{"container_id": 0, "host_id": AUTO_FIRST,
                                         "length": SIZE}]
    assert blocks[b]["uidMappings"][0]["host_id"] == AUTO_FIRST + SIZE
    assert blocks[a]["allocated"] is True
    cid = c.run(b, bcfg, "main", ["sleep", "600"])
    assert c.out(cid, "cat", "/proc/self/uid_map").split() == ["0", str(AUTO_FIRST + SIZE),
                                                               str(SIZE)]
    # both blocks taken: a third pod is refused, and nothing of it is left
    before = leftovers(c)
    with pytest.raises(grpc.RpcError) as e:
        annotated_pod(c, "c")
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "no free block" in (e.value.details() or "")
    assert leftovers(c) == before
    # the allocations are the records': a restarted daemon still knows both blocks
    c.env.daemon.stop()
    c.env.daemon.start()
    c.env.cri = c.env.daemon.client()
    with pytest.raises(grpc.RpcError) as e:
        annotated_pod(c, "c")
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # the pod and its container kept running through the restart, in their namespace
    assert c.out(cid, "cat", "/proc/self/uid_map").split()[1] == str(AUTO_FIRST + SIZE)
    # a removed pod's block is free again
    c.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=a))
    d, _ = annotated_pod(c, "d")
    assert pod_info(c, d)["namespaces"]["user"]["uidMappings"][0]["host_id"] == AUTO_FIRST


def test_refused_pods_leave_nothing(auto: Ctr) -> None:
    c = auto
    before = leftovers(c)
    m = [pb.IDMapping(container_id=0, host_id=700000, length=SIZE)]
    for change, code in [
        (lambda o: o.userns_options.CopyFrom(pb.UserNamespace(mode=pb.CONTAINER)),
         grpc.StatusCode.INVALID_ARGUMENT),
        (lambda o: (o.userns_options.CopyFrom(pb.UserNamespace(mode=pb.POD, uids=m, gids=m)),
                    setattr(o, "network", pb.NODE)), grpc.StatusCode.INVALID_ARGUMENT),
    ]:
        cfg = pod_config("refused")
        change(cfg.linux.security_context.namespace_options)
        with pytest.raises(grpc.RpcError) as e:
            c.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=60)
        assert e.value.code() == code, e.value.details()
        assert "namespace_options" in (e.value.details() or "")
    assert leftovers(c) == before
    assert not c.rt.ListPodSandbox(pb.ListPodSandboxRequest()).items


def test_image_volume_in_a_user_namespace(ctr: Ctr, registry: ImageRegistry) -> None:  # noqa: F811
    web = registry.ref("web")
    ctr.env.cri.images.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=web)),
                                 timeout=120)
    sid, pcfg = userns_pod(ctr, "imgvol", HOST_IDS[ctr.handler] + 2 * SIZE)
    vol = pb.Mount(container_path="/vol", readonly=True, image=pb.ImageSpec(image=web))
    cid = ctr.run(sid, pcfg, "main", ["sleep", "600"], mounts=[vol])
    # the image's files are root's in the pod here too
    assert ctr.out(cid, "stat", "-c", "%u:%g", "/vol/www/index.html") == "0:0"
    assert "hello from tether-test-web" in ctr.out(cid, "cat", "/vol/www/index.html")
    ctr.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
    mountinfo = Path("/proc/self/mountinfo").read_text()
    assert "imagevols" not in mountinfo and ".idmap" not in mountinfo


@pytest.fixture
def copying(tmp_path: Path, registry: ImageRegistry) -> Iterator[Ctr]:
    """A daemon that gives user-namespaced containers shifted copies of the layers."""
    c = start_ctr(tmp_path, registry, "crun", extra_config='[userns]\nrootfs = "copy"\n')
    yield c
    stop_env(c.env)


LISTING = ["sh", "-c", "find / -xdev ! -path '/proc*' ! -path '/sys*' ! -path '/dev*' "
           "! -path /etc/hostname ! -path /etc/resolv.conf -exec stat -c '%a %u %g %n' {} + "
           "| sort"]


def test_shifted_copies_show_the_image_as_it_is(copying: Ctr) -> None:
    c = copying
    plain, plain_cfg = c.pod("plain")
    reference = c.out(c.run(plain, plain_cfg, "ref", ["sleep", "600"]), *LISTING)
    assert " 0 0 /bin/busybox\n" in reference
    h = 500000
    sid, pcfg = userns_pod(c, "copied", h)
    one = c.run(sid, pcfg, "one", ["sleep", "600"])
    two = c.run(sid, pcfg, "two", ["sleep", "600"])
    # every file of the image with its owner and mode (set-id bits too), as without a
    # user namespace: the same listing, from inside the pod's namespace
    assert c.out(one, *LISTING) == reference
    assert c.out(one, "cat", "/proc/self/uid_map").split() == ["0", str(h), str(SIZE)]
    assert c.exec(one, "sh", "-c", "echo x > /etc/new").exit_code == 0
    # one copy per mapping, shared by the pod's containers, none for the plain pod
    shifted = c.env.daemon.root / "images" / "snapshots" / "shifted"
    keys = [p.name for p in shifted.iterdir()]
    assert len(keys) == 1 and str(h) in keys[0], keys
    layers = list((shifted / keys[0]).iterdir())
    assert layers and all(os.stat(p / "fs").st_uid == h for p in layers if (p / "fs").exists())
    # gone with the last container that used it
    c.rt.StopContainer(pb.StopContainerRequest(container_id=one, timeout=0))
    c.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=one))
    assert [p.name for p in shifted.iterdir()] == keys
    assert c.out(two, "cat", "/etc/hostname")
    c.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
    assert list(shifted.iterdir()) == []


def test_refused_containers_and_maps_get_invalid_argument(ctr: Ctr) -> None:  # noqa: F811
    """What would fail only when the runtime starts the container is refused up front: a map
    too small for the runtime's own /dev/pts (gid 5), a user the pod's namespace lacks."""
    cfg = pod_config("tiny")
    m = [pb.IDMapping(container_id=0, host_id=800000, length=1)]
    cfg.linux.security_context.namespace_options.userns_options.CopyFrom(
        pb.UserNamespace(mode=pb.POD, uids=m, gids=m))
    with pytest.raises(grpc.RpcError) as e:
        ctr.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=60)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "userns_options.uids[0].length: 1" in (e.value.details() or "")
    sid, pcfg = userns_pod(ctr, "unmapped", HOST_IDS[ctr.handler] + 3 * SIZE)
    sc = pb.LinuxContainerSecurityContext(run_as_user=pb.Int64Value(value=SIZE))
    with pytest.raises(grpc.RpcError) as e:
        ctr.create(sid, pcfg, "far", ["true"], linux=pb.LinuxContainerConfig(security_context=sc))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"run_as_user: id {SIZE}" in (e.value.details() or "")
    assert not ctr.rt.ListContainers(pb.ListContainersRequest()).containers
