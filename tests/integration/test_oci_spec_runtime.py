"""shim.oci.spec.generate against the real runtimes: runc 1.1 and crun 1.8 must accept the spec
and run busybox with the user, groups, capabilities, namespaces and limits it asks for.

Needs root, runc/crun, umoci and the test images; crun needs the hybrid cgroup fix
(/work/shared/lab/cgroups.sh fix). No daemon and no pod: NODE namespaces, or a network
namespace pinned here with ``unshare --net=<file>``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from podsandbox import cgroups
from podsandbox.types import Mode, PodContext
from shim.cri import api_pb2 as pb
from shim.images.manifest import ImageConfig
from shim.oci import spec as oci
from shim.oci.caps import ALL_CAPS
from shim.oci.host import bounding_capabilities
from shim.oci.types import ImageFiles, RuntimeOptions
from shim.rpc.container_convert import container_spec
from tests.rig.images import layout_path

RUNTIMES = [r for r in ("runc", "crun") if shutil.which(r)]
CGROUP_PARENT = "/tether-spec-test"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not RUNTIMES or not shutil.which("umoci"), reason="needs runc/crun, umoci"),
]


@pytest.fixture(scope="module")
def rootfs(test_images: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    bundle = tmp_path_factory.mktemp("oci-user") / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{layout_path('user', test_images)}:latest",
                    str(bundle)], check=True, capture_output=True)
    yield bundle / "rootfs"
    for point in cgroups.layout().mountpoints():
        with contextlib.suppress(OSError):
            os.rmdir(os.path.join(point, CGROUP_PARENT.lstrip("/")))


@pytest.fixture
def netns(tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "netns"
    path.touch()
    subprocess.run(["unshare", f"--net={path}", "true"], check=True)
    yield str(path)
    subprocess.run(["umount", str(path)], check=False)


@dataclass
class Result:
    rc: int
    out: str
    err: str
    spec: dict[str, Any]

    def status(self, key: str) -> str:
        return next(ln.split(":", 1)[1].strip() for ln in self.out.splitlines()
                    if ln.startswith(key + ":"))


def mask(names: list[str]) -> str:
    return f"{sum(1 << ALL_CAPS.index(n) for n in names):016x}"


def run(runtime: str, rootfs: Path, tmp: Path, c: pb.ContainerConfig, *,
        pod_kw: dict[str, Any] | None = None, rt_kw: dict[str, Any] | None = None,
        privileged_pod: bool = False,
        device_info: dict[str, tuple[str, int, int, int]] | None = None) -> Result:
    (tmp / "hostname").write_text("spec-test\n")
    (tmp / "resolv.conf").write_text("nameserver 127.0.0.1\n")
    (tmp / "shm").mkdir(exist_ok=True)
    kw: dict[str, Any] = {
        "sandbox_id": "spec", "network": Mode.NODE, "ipc": Mode.NODE, "uts": Mode.NODE,
        "pid": Mode.CONTAINER, "ns_paths": {}, "hostname": "spec-test",
        "hostname_path": str(tmp / "hostname"), "resolv_conf_path": str(tmp / "resolv.conf"),
        "shm_path": str(tmp / "shm"), "cgroup_parent": CGROUP_PARENT,
    }
    kw.update(pod_kw or {})
    host = bounding_capabilities()
    rt = RuntimeOptions(host_capabilities=host, min_oom_score_adj=0, pids_limit=64,
                        cgroup_v2=cgroups.layout().mode == "v2", **(rt_kw or {}))
    files = ImageFiles((rootfs / "etc/passwd").read_text(), (rootfs / "etc/group").read_text())
    cid = f"tether-spec-{runtime}-{os.getpid()}-{tmp.name[-12:]}"
    sandbox = pb.PodSandboxConfig()
    sandbox.linux.security_context.privileged = privileged_pod
    spec = oci.generate(cid, container_spec(c, sandbox), PodContext(**kw),
                        ImageConfig(cmd=("sh",), user="1000:1000"), files, str(rootfs), rt,
                        device_info=device_info)
    bundle = tmp / f"bundle-{runtime}"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(spec))
    state = tmp / f"state-{runtime}"
    try:
        p = subprocess.run([runtime, "--root", str(state), "run", "--bundle", str(bundle), cid],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    finally:
        subprocess.run([runtime, "--root", str(state), "delete", "--force", cid],
                       capture_output=True, check=False)
    return Result(p.returncode, p.stdout, p.stderr, spec)


SCRIPT = ("id; grep -E '^Cap(Eff|Bnd|Prm)' /proc/self/status;"
          " echo oom=$(cat /proc/self/oom_score_adj); echo net=$(readlink /proc/self/ns/net);"
          " echo host=$(hostname); echo cwd=$(pwd); echo home=$HOME")


def container(**sc: Any) -> pb.ContainerConfig:
    c = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="t"),
                           image=pb.ImageSpec(image="user"), command=["sh", "-c", SCRIPT])
    c.linux.security_context.CopyFrom(pb.LinuxContainerSecurityContext(**sc))
    c.linux.security_context.namespace_options.pid = pb.CONTAINER
    return c


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_root_default_caps(runtime: str, rootfs: Path, tmp_path: Path) -> None:
    c = container()
    c.linux.security_context.run_as_user.value = 0
    c.linux.security_context.capabilities.add_capabilities.extend(["NET_RAW", "SYS_RESOURCE"])
    c.linux.resources.oom_score_adj = -500  # below what the daemon may set: clamped to 0
    c.linux.resources.memory_limit_in_bytes = 64 << 20
    r = run(runtime, rootfs, tmp_path, c)
    assert r.rc == 0, r.err
    assert "uid=0(root) gid=0(root)" in r.out
    caps = r.spec["process"]["capabilities"]
    assert r.status("CapEff") == mask(caps["effective"]) == r.status("CapBnd")
    assert "CAP_NET_RAW" in caps["effective"]
    assert "oom=0" in r.out and "home=/root" in r.out and "cwd=/" in r.out


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_image_user_non_root(runtime: str, rootfs: Path, tmp_path: Path) -> None:
    c = container(supplemental_groups=[4000], no_new_privs=True)
    r = run(runtime, rootfs, tmp_path, c)
    assert r.rc == 0, r.err
    assert "uid=1000(alice) gid=1000(alice) groups=50(staff),1000(alice),4000" in r.out
    assert r.status("CapEff") == "0" * 16
    assert r.status("CapBnd") == mask(r.spec["process"]["capabilities"]["bounding"])
    assert "home=/home/alice" in r.out


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_run_as_username_with_seccomp_runtime_default(runtime: str, rootfs: Path,
                                                      tmp_path: Path) -> None:
    c = container(run_as_username="bob")
    c.linux.security_context.seccomp.profile_type = pb.SecurityProfile.RuntimeDefault
    r = run(runtime, rootfs, tmp_path, c)
    assert "seccomp" in r.spec["linux"]
    assert r.rc == 0, r.err
    assert "uid=1001(bob) gid=1001(bob)" in r.out


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_pod_network_and_uts(runtime: str, rootfs: Path, tmp_path: Path, netns: str) -> None:
    c = container(run_as_user=pb.Int64Value(value=0))
    r = run(runtime, rootfs, tmp_path, c,
            pod_kw={"network": Mode.POD, "ns_paths": {"net": netns}})
    assert r.rc == 0, r.err
    assert f"net=net:[{os.stat(netns).st_ino}]" in r.out


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_privileged(runtime: str, rootfs: Path, tmp_path: Path) -> None:
    c = container(run_as_user=pb.Int64Value(value=0), privileged=True)
    r = run(runtime, rootfs, tmp_path, c, privileged_pod=True)
    assert r.rc == 0, r.err
    assert r.status("CapEff") == mask(sorted(bounding_capabilities(), key=ALL_CAPS.index))


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_mounts_devices_readonly_rootfs(runtime: str, rootfs: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("hello\n")
    st = os.stat("/dev/null")
    c = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name="t"), image=pb.ImageSpec(image="user"),
        command=["sh", "-c", "cat /data/f; echo x > /data/g || echo data-ro;"
                 " echo x > /etc/passwd || echo rootfs-ro; echo z > /mynull && echo dev-ok;"
                 " echo s > /dev/shm/s && echo shm-ok; cat /etc/resolv.conf"],
        mounts=[pb.Mount(container_path="/data", host_path=str(data), readonly=True,
                         propagation=pb.PROPAGATION_HOST_TO_CONTAINER)],
        devices=[pb.Device(host_path="/dev/null", container_path="/mynull", permissions="rw")],
    )
    c.linux.security_context.CopyFrom(pb.LinuxContainerSecurityContext(
        run_as_user=pb.Int64Value(value=0), readonly_rootfs=True))
    c.linux.security_context.namespace_options.pid = pb.CONTAINER
    r = run(runtime, rootfs, tmp_path, c,
            device_info={"/dev/null": ("c", os.major(st.st_rdev), os.minor(st.st_rdev),
                                       st.st_mode)})
    assert r.spec["linux"]["rootfsPropagation"] == "rslave"
    assert r.rc == 0, r.err
    for want in ("hello", "data-ro", "rootfs-ro", "dev-ok", "shm-ok", "nameserver 127.0.0.1"):
        assert want in r.out, r.out + r.err
    assert (tmp_path / "shm" / "s").exists()
