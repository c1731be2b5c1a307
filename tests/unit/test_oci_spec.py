"""shim.oci.spec.generate / exec_process: the whole config.json from a ContainerSpec. Most
cases are written as the CRI messages a client sends, made a ContainerSpec by
container_convert as CreateContainer does (so the refusals are the client's); the generator
itself takes typed input only (test_spec_without_protobuf)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from podsandbox.types import Mode, PodContext
from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.images.manifest import ImageConfig
from shim.oci import spec as oci
from shim.oci.caps import ALL_CAPS
from shim.oci.mounts import DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS, cri_mounts
from shim.oci.types import (
    ContainerSpec,
    ImageFiles,
    Mount,
    PidMode,
    PodConfig,
    Propagation,
    RuntimeOptions,
    SecurityContext,
    SecurityProfile,
)
from shim.rpc.container_convert import container_spec

pytestmark = pytest.mark.unit

HOST = frozenset(c for c in ALL_CAPS if c != "CAP_SYS_RESOURCE")
RT = RuntimeOptions(host_capabilities=HOST, min_oom_score_adj=-1000, pids_limit=0)
NS = {"net": "/run/tether/ns/net-sb", "ipc": "/run/tether/ns/ipc-sb",
      "uts": "/run/tether/ns/uts-sb", "pid": "/run/tether/ns/pid-sb"}
POD = PodContext(
    sandbox_id="sb", network=Mode.POD, ipc=Mode.POD, uts=Mode.POD, pid=Mode.CONTAINER,
    ns_paths=NS, hostname="web-0", hostname_path="/run/tether/sb/hostname",
    resolv_conf_path="/run/tether/sb/resolv.conf", shm_path="/run/tether/sb/shm",
    cgroup_parent="/kubepods/pod1", sysctls={},
)
IMAGE = ImageConfig(entrypoint=("/ep",), cmd=("c1", "c2"), env=("PATH=/img/bin", "A=img"),
                    working_dir="/srv")
FILES = ImageFiles(
    "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
    "root:x:0:\nstaff:x:50:alice\n",
)
SECCOMP_CALLS: list[tuple[str, Any]] = []


@pytest.fixture(autouse=True)
def fake_seccomp(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Stands in for shim.oci.seccomp's profiles: records what was asked."""

    def default_profile(**kw: Any) -> dict[str, Any]:
        SECCOMP_CALLS.append(("default", kw))
        return {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": []}

    def load_localhost(path: str, **kw: Any) -> dict[str, Any]:
        SECCOMP_CALLS.append(("localhost", path))
        if "missing" in path:
            raise InvalidArgument(f"seccomp profile {path}: no such file")
        return {"defaultAction": "SCMP_ACT_LOG", "from": path}

    monkeypatch.setattr(oci.seccomp, "default_profile", default_profile)
    monkeypatch.setattr(oci.seccomp, "load_localhost", load_localhost)
    SECCOMP_CALLS.clear()
    yield


def cfg(**kw: Any) -> pb.ContainerConfig:
    c = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="app"),
                           image=pb.ImageSpec(image="busybox"), **kw)
    c.linux.security_context.namespace_options.pid = pb.CONTAINER
    return c


def sandbox(privileged: bool = False) -> pb.PodSandboxConfig:
    s = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="web-0", namespace="default",
                                                           uid="u1"))
    s.linux.security_context.privileged = privileged
    return s


def gen(c: pb.ContainerConfig | None = None, *, pod: PodContext = POD,
        image: ImageConfig = IMAGE, rt: RuntimeOptions = RT, sb: pb.PodSandboxConfig | None = None,
        **kw: Any) -> dict[str, Any]:
    spec = container_spec(c if c is not None else cfg(), sb or sandbox())
    return oci.generate("ctr1", spec, pod, image, FILES, "/var/lib/tether/ctr1/rootfs", rt, **kw)


def privileged_cfg() -> pb.ContainerConfig:
    c = cfg()
    c.linux.security_context.privileged = True
    return c


# --- golden-ish: the shape runc and crun need ---------------------------------------------

def test_required_oci_keys() -> None:
    s = gen()
    assert s["ociVersion"] == "1.0.2"
    assert s["root"] == {"path": "/var/lib/tether/ctr1/rootfs", "readonly": False}
    assert s["hostname"] == "web-0"
    p = s["process"]
    assert set(p) >= {"terminal", "user", "args", "env", "cwd", "capabilities",
                      "noNewPrivileges", "oomScoreAdj"}
    assert p["user"] == {"uid": 0, "gid": 0, "additionalGids": [0]}
    assert set(p["capabilities"]) == {"bounding", "effective", "permitted", "inheritable",
                                      "ambient"}
    for m in s["mounts"]:
        assert set(m) == {"destination", "type", "source", "options"}
        assert m["destination"].startswith("/")
    lx = s["linux"]
    assert set(lx) >= {"namespaces", "resources", "cgroupsPath", "devices", "maskedPaths",
                       "readonlyPaths"}
    assert lx["cgroupsPath"] == "/kubepods/pod1/tether-ctr1"
    assert lx["resources"]["devices"][0] == {"allow": False, "access": "rwm"}
    assert "seccomp" not in lx  # unset everywhere: Unconfined, the kubelet's default
    assert s["annotations"]["io.kubernetes.cri.sandbox-id"] == "sb"
    assert s["annotations"]["io.kubernetes.cri.container-name"] == "app"
    assert s["annotations"]["io.kubernetes.cri.container-type"] == "container"
    for v in s["annotations"].values():
        assert isinstance(v, str)


def test_cri_annotations_not_passed_to_the_runtime() -> None:
    c = cfg()
    c.annotations["run.oci.keep_original_groups"] = "1"
    assert "run.oci.keep_original_groups" not in gen(c)["annotations"]


def test_readonly_rootfs() -> None:
    c = cfg()
    c.linux.security_context.readonly_rootfs = True
    s = gen(c)
    assert s["root"]["readonly"] is True
    by = {m["destination"]: m for m in s["mounts"]}
    assert "ro" in by["/etc/resolv.conf"]["options"] and "ro" in by["/etc/hostname"]["options"]


# --- process -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("command", "args", "want"),
    [
        ([], [], ["/ep", "c1", "c2"]),
        (["/bin/x"], [], ["/bin/x"]),  # command drops the image Cmd
        ([], ["a1"], ["/ep", "a1"]),  # args replaces Cmd
        (["/bin/x"], ["a1", "a2"], ["/bin/x", "a1", "a2"]),
    ],
)
def test_command_args_merge(command: list[str], args: list[str], want: list[str]) -> None:
    assert gen(cfg(command=command, args=args))["process"]["args"] == want


def test_empty_command_names_the_field() -> None:
    with pytest.raises(InvalidArgument, match=r"^command: "):
        gen(image=ImageConfig())


def test_env_override_and_defaults() -> None:
    c = cfg(envs=[pb.KeyValue(key="A", value=b"cri"), pb.KeyValue(key="B", value="é".encode())])
    env = gen(c)["process"]["env"]
    assert env == ["HOSTNAME=web-0", "PATH=/img/bin", "A=cri", "B=é", "HOME=/root"]


def test_env_path_and_home_defaults() -> None:
    c = cfg(tty=True)
    c.linux.security_context.run_as_username = "alice"
    env = gen(c, image=ImageConfig(cmd=("sh",)))["process"]["env"]
    assert "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" in env
    assert "HOME=/home/alice" in env and "TERM=xterm" in env


def test_env_explicit_home_kept_and_bad_values() -> None:
    env = gen(cfg(envs=[pb.KeyValue(key="HOME", value=b"/h")]))["process"]["env"]
    assert "HOME=/h" in env and "HOME=/root" not in env
    with pytest.raises(InvalidArgument, match=r"envs\[0\].value"):
        gen(cfg(envs=[pb.KeyValue(key="X", value=b"\xff")]))
    with pytest.raises(InvalidArgument, match=r"envs\[0\].key"):
        gen(cfg(envs=[pb.KeyValue(key="", value=b"x")]))


def test_cwd() -> None:
    assert gen()["process"]["cwd"] == "/srv"
    assert gen(cfg(working_dir="/w"))["process"]["cwd"] == "/w"
    assert gen(image=ImageConfig(cmd=("sh",)))["process"]["cwd"] == "/"
    assert gen(image=replace(IMAGE, working_dir="rel"))["process"]["cwd"] == "/rel"
    with pytest.raises(InvalidArgument, match="working_dir"):
        gen(cfg(working_dir="rel"))


def test_terminal_and_no_new_privs() -> None:
    c = cfg(tty=True)
    c.linux.security_context.no_new_privs = True
    p = gen(c)["process"]
    assert p["terminal"] is True and p["noNewPrivileges"] is True


def test_user_and_groups_from_passwd() -> None:
    c = cfg()
    c.linux.security_context.run_as_username = "alice"
    c.linux.security_context.supplemental_groups.append(3000)
    p = gen(c)["process"]
    assert p["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [1000, 50, 3000]}


def test_image_user_default() -> None:
    p = gen(image=replace(IMAGE, user="alice:staff"))["process"]
    assert (p["user"]["uid"], p["user"]["gid"]) == (1000, 50)


@pytest.mark.parametrize(("asked", "floor", "want"),
                         [(-998, -1000, -998), (-998, 0, 0), (500, 0, 500), (5000, 0, 1000)])
def test_oom_score_adj_clamped(asked: int, floor: int, want: int) -> None:
    c = cfg()
    c.linux.resources.oom_score_adj = asked
    assert gen(c, rt=replace(RT, min_oom_score_adj=floor))["process"]["oomScoreAdj"] == want


# --- capabilities --------------------------------------------------------------------------

def test_caps_default_root() -> None:
    caps = gen()["process"]["capabilities"]
    assert caps["effective"] == caps["bounding"]
    assert set(caps["bounding"]) == {
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_SETGID", "CAP_SETUID",
        "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_KILL"}


def test_caps_non_root_bounding_only() -> None:
    c = cfg()
    c.linux.security_context.run_as_user.value = 1000
    caps = gen(c)["process"]["capabilities"]
    assert caps["bounding"] and caps["effective"] == caps["permitted"] == []


def test_caps_privileged_is_host_set() -> None:
    caps = gen(privileged_cfg(), sb=sandbox(True))["process"]["capabilities"]
    assert set(caps["bounding"]) == HOST and "CAP_SYS_RESOURCE" not in caps["effective"]


def test_caps_add_sys_resource_dropped_by_host() -> None:
    c = cfg()
    c.linux.security_context.capabilities.add_capabilities.extend(["SYS_RESOURCE", "net_raw"])
    caps = gen(c)["process"]["capabilities"]
    assert "CAP_SYS_RESOURCE" not in caps["bounding"] and "CAP_NET_RAW" in caps["bounding"]


def test_privileged_needs_privileged_pod() -> None:
    with pytest.raises(InvalidArgument, match="privileged"):
        gen(privileged_cfg())


# --- namespaces ------------------------------------------------------------------------------

def ns_of(s: dict[str, Any]) -> dict[str, str | None]:
    return {n["type"]: n.get("path") for n in s["linux"]["namespaces"]}


def test_namespaces_pod_mode() -> None:
    assert ns_of(gen()) == {"network": NS["net"], "ipc": NS["ipc"], "uts": NS["uts"],
                            "pid": None, "mount": None}


def test_namespaces_node_mode_omitted_and_no_hostname() -> None:
    pod = replace(POD, network=Mode.NODE, ipc=Mode.NODE, uts=Mode.NODE, ns_paths={})
    s = gen(pod=pod)
    assert ns_of(s) == {"pid": None, "mount": None}
    assert "hostname" not in s


@pytest.mark.parametrize(
    ("container_mode", "pod_mode", "want"),
    [
        (pb.CONTAINER, Mode.CONTAINER, ("pid", None)),
        (pb.POD, Mode.POD, ("pid", NS["pid"])),
        (pb.NODE, Mode.NODE, None),
    ],
)
def test_pid_modes(container_mode: int, pod_mode: Mode, want: tuple[str, str | None] | None
                   ) -> None:
    c = cfg()
    c.linux.security_context.namespace_options.pid = container_mode  # type: ignore[assignment]
    got = ns_of(gen(c, pod=replace(POD, pid=pod_mode)))
    if want is None:
        assert "pid" not in got
    else:
        assert got["pid"] == want[1]


def test_pid_target() -> None:
    c = cfg()
    c.linux.security_context.namespace_options.pid = pb.TARGET
    c.linux.security_context.namespace_options.target_id = "other"
    assert ns_of(gen(c, target_pid=4321))["pid"] == "/proc/4321/ns/pid"
    with pytest.raises(InvalidArgument, match="target_id"):
        gen(c)


def test_cgroup_namespace_on_v2_only() -> None:
    assert "cgroup" not in ns_of(gen())
    assert "cgroup" in ns_of(gen(rt=replace(RT, cgroup_v2=True)))


def test_missing_pinned_namespace() -> None:
    with pytest.raises(InvalidArgument, match="net"):
        gen(pod=replace(POD, ns_paths={}))


# --- sysctls ----------------------------------------------------------------------------------

def test_sysctls_skipped_for_node_namespaces() -> None:
    sysctls = {"net.ipv4.ip_unprivileged_port_start": "0", "kernel.shm_rmid_forced": "1",
               "kernel/msgmax": "9000"}
    s = gen(pod=replace(POD, sysctls=sysctls))
    assert s["linux"]["sysctl"] == {"net.ipv4.ip_unprivileged_port_start": "0",
                                    "kernel.shm_rmid_forced": "1", "kernel.msgmax": "9000"}
    host_net = replace(POD, sysctls=sysctls, network=Mode.NODE, uts=Mode.NODE)
    assert "net.ipv4.ip_unprivileged_port_start" not in gen(pod=host_net)["linux"]["sysctl"]
    with pytest.raises(InvalidArgument, match=r"vm\.swappiness"):
        gen(pod=replace(POD, sysctls={"vm.swappiness": "1"}))


# --- mounts -----------------------------------------------------------------------------------

def mounts_of(s: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["destination"]: m for m in s["mounts"]}


def test_standard_mounts() -> None:
    m = mounts_of(gen())
    assert list(m)[:7] == ["/proc", "/dev", "/dev/pts", "/dev/mqueue", "/dev/shm", "/sys",
                           "/sys/fs/cgroup"]
    assert m["/dev"]["options"] == ["nosuid", "strictatime", "mode=755", "size=65536k"]
    assert {"newinstance", "ptmxmode=0666", "mode=0620", "gid=5"} <= set(
        m["/dev/pts"]["options"])
    assert m["/dev/shm"]["source"] == POD.shm_path and m["/dev/shm"]["type"] == "bind"
    assert "ro" in m["/sys"]["options"] and "ro" in m["/sys/fs/cgroup"]["options"]
    assert m["/etc/hostname"]["source"] == POD.hostname_path
    assert m["/etc/resolv.conf"]["source"] == POD.resolv_conf_path
    assert "rw" in m["/etc/resolv.conf"]["options"]


def test_privileged_sys_rw() -> None:
    m = mounts_of(gen(privileged_cfg(), sb=sandbox(True)))
    assert "rw" in m["/sys"]["options"] and "rw" in m["/sys/fs/cgroup"]["options"]


def test_cri_mounts_and_propagation() -> None:
    c = cfg(mounts=[
        pb.Mount(container_path="/data/sub", host_path="/h/sub", readonly=True),
        pb.Mount(container_path="/data", host_path="/h/data",
                 propagation=pb.PROPAGATION_HOST_TO_CONTAINER, selinux_relabel=True),
    ])
    s = gen(c)
    dests = [m["destination"] for m in s["mounts"]]
    assert dests.index("/data") < dests.index("/data/sub")
    m = mounts_of(s)
    assert m["/data"] == {"destination": "/data", "type": "bind", "source": "/h/data",
                          "options": ["rbind", "rslave", "rw"]}
    assert m["/data/sub"]["options"] == ["rbind", "rprivate", "ro"]
    assert s["linux"]["rootfsPropagation"] == "rslave"
    c.mounts.add(container_path="/shared", host_path="/h/s",
                 propagation=pb.PROPAGATION_BIDIRECTIONAL)
    s = gen(c)
    assert s["linux"]["rootfsPropagation"] == "rshared"
    assert mounts_of(s)["/shared"]["options"][1] == "rshared"
    assert "rootfsPropagation" not in gen()["linux"]


def test_cri_mount_replaces_standard_path() -> None:
    c = cfg(mounts=[pb.Mount(container_path="/etc/resolv.conf/", host_path="/my/resolv")])
    s = gen(c)
    hits = [m for m in s["mounts"] if m["destination"] == "/etc/resolv.conf"]
    assert len(hits) == 1 and hits[0]["source"] == "/my/resolv"


def test_bad_cri_mounts() -> None:
    with pytest.raises(InvalidArgument, match=r"mounts\[0\].container_path"):
        gen(cfg(mounts=[pb.Mount(container_path="rel", host_path="/h")]))
    with pytest.raises(InvalidArgument, match=r"mounts\[0\].host_path"):
        gen(cfg(mounts=[pb.Mount(container_path="/x")]))


def test_recursive_read_only_mounts() -> None:
    rro = Mount(container_path="/r", host_path="/h", readonly=True, recursive_read_only=True)
    (m,), _ = cri_mounts([rro], rro_supported=True)
    assert m["options"] == ["rbind", "rprivate", "ro", "rro"]
    with pytest.raises(InvalidArgument, match="cannot make recursive read-only"):
        cri_mounts([rro])
    for bad, why in ((Mount(container_path="/r", host_path="/h", recursive_read_only=True),
                      "needs readonly"),
                     (Mount(container_path="/r", host_path="/h", readonly=True,
                            recursive_read_only=True, propagation=Propagation.BIDIRECTIONAL),
                      "PROPAGATION_PRIVATE")):
        with pytest.raises(InvalidArgument, match=why):
            cri_mounts([bad], rro_supported=True)
    # image volumes are resolved to host paths by the container manager first
    with pytest.raises(InvalidArgument, match=r"mounts\[0\].image.image: required"):
        gen(cfg(mounts=[pb.Mount(container_path="/v", image=pb.ImageSpec())]))


def test_no_shm_path_gives_a_tmpfs() -> None:
    m = mounts_of(gen(pod=replace(POD, shm_path="")))
    assert m["/dev/shm"]["type"] == "tmpfs"


# --- masked and read-only paths -------------------------------------------------------------

def test_masked_paths_defaults() -> None:
    lx = gen()["linux"]
    assert lx["maskedPaths"] == list(DEFAULT_MASKED_PATHS)
    assert lx["readonlyPaths"] == list(DEFAULT_READONLY_PATHS)
    assert "/proc/kcore" in lx["maskedPaths"] and "/proc/sys" in lx["readonlyPaths"]


def test_masked_paths_from_cri() -> None:
    c = cfg()
    c.linux.security_context.masked_paths.append("/proc/x")
    c.linux.security_context.readonly_paths.append("/proc/y")
    lx = gen(c)["linux"]
    assert lx["maskedPaths"] == ["/proc/x"] and lx["readonlyPaths"] == ["/proc/y"]


def test_masked_paths_privileged_and_unmasked() -> None:
    lx = gen(privileged_cfg(), sb=sandbox(True))["linux"]
    assert lx["maskedPaths"] == [] and lx["readonlyPaths"] == []
    lx = gen(unmasked_proc=True)["linux"]
    assert lx["maskedPaths"] == [] and lx["readonlyPaths"] == []


# --- seccomp ------------------------------------------------------------------------------------

def with_seccomp(ptype: int | None = None, ref: str = "", path: str = "") -> pb.ContainerConfig:
    c = cfg()
    sc = c.linux.security_context
    if ptype is not None:
        sc.seccomp.profile_type = ptype  # type: ignore[assignment]
        sc.seccomp.localhost_ref = ref
    sc.seccomp_profile_path = path
    return c


def test_seccomp_runtime_default_gets_bounding_caps() -> None:
    s = gen(with_seccomp(pb.SecurityProfile.RuntimeDefault))
    assert s["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    kind, kw = SECCOMP_CALLS[0]
    assert kind == "default"
    assert kw["capabilities"] == frozenset(s["process"]["capabilities"]["bounding"])


def test_seccomp_unconfined() -> None:
    assert "seccomp" not in gen(with_seccomp(pb.SecurityProfile.Unconfined))["linux"]


def test_seccomp_localhost_absolute_and_relative() -> None:
    s = gen(with_seccomp(pb.SecurityProfile.Localhost, "/etc/prof.json"))
    assert s["linux"]["seccomp"]["from"] == "/etc/prof.json"
    s = gen(with_seccomp(pb.SecurityProfile.Localhost, "prof.json"))
    assert s["linux"]["seccomp"]["from"] == "/var/lib/kubelet/seccomp/prof.json"
    with pytest.raises(InvalidArgument, match=r"/x/missing\.json"):
        gen(with_seccomp(pb.SecurityProfile.Localhost, "/x/missing.json"))
    with pytest.raises(InvalidArgument, match="localhost_ref"):
        gen(with_seccomp(pb.SecurityProfile.Localhost, ""))


@pytest.mark.parametrize(
    ("path", "want"),
    [("runtime/default", "SCMP_ACT_ERRNO"), ("docker/default", "SCMP_ACT_ERRNO"),
     ("unconfined", None), ("localhost/abs/p.json", "SCMP_ACT_LOG")],
)
def test_seccomp_deprecated_strings(path: str, want: str | None) -> None:
    got = gen(with_seccomp(path=path))["linux"].get("seccomp")
    assert (got or {}).get("defaultAction") == want
    if path.startswith("localhost/"):
        assert got is not None and got["from"] == "/var/lib/kubelet/seccomp/abs/p.json"


def test_seccomp_bad_deprecated_string() -> None:
    with pytest.raises(InvalidArgument, match="seccomp_profile_path"):
        gen(with_seccomp(path="bogus"))


def test_seccomp_message_wins_over_string() -> None:
    c = with_seccomp(pb.SecurityProfile.Unconfined, path="runtime/default")
    assert "seccomp" not in gen(c)["linux"]


def test_seccomp_pod_default() -> None:
    sb = sandbox()
    sb.linux.security_context.seccomp.profile_type = pb.SecurityProfile.RuntimeDefault
    assert "seccomp" in gen(sb=sb)["linux"]
    # the container's own choice wins
    assert "seccomp" not in gen(with_seccomp(pb.SecurityProfile.Unconfined), sb=sb)["linux"]


def test_seccomp_privileged_unconfined() -> None:
    c = privileged_cfg()
    c.linux.security_context.seccomp.profile_type = pb.SecurityProfile.RuntimeDefault
    assert "seccomp" not in gen(c, sb=sandbox(True))["linux"]


def test_seccomp_disabled_node() -> None:
    rt = replace(RT, seccomp_enabled=False)
    assert "seccomp" not in gen(with_seccomp(pb.SecurityProfile.RuntimeDefault), rt=rt)["linux"]
    with pytest.raises(InvalidArgument, match="seccomp is disabled"):
        gen(with_seccomp(pb.SecurityProfile.Localhost, "/p.json"), rt=rt)


# --- AppArmor -----------------------------------------------------------------------------------

def with_apparmor(ptype: int, ref: str = "") -> pb.ContainerConfig:
    c = cfg()
    c.linux.security_context.apparmor.profile_type = ptype  # type: ignore[assignment]
    c.linux.security_context.apparmor.localhost_ref = ref
    return c


def test_apparmor_absent_localhost_is_an_error() -> None:
    with pytest.raises(InvalidArgument) as e:
        gen(with_apparmor(pb.SecurityProfile.Localhost, "my-prof"))
    assert e.value.message.startswith("linux.security_context.apparmor: ")
    assert "'my-prof'" in e.value.message and "not enabled" in e.value.message
    c = cfg()
    c.linux.security_context.apparmor_profile = "localhost/my-prof"
    with pytest.raises(InvalidArgument, match="apparmor_profile"):
        gen(c)


def test_apparmor_absent_runtime_default_is_unconfined() -> None:
    assert "apparmorProfile" not in gen(with_apparmor(pb.SecurityProfile.RuntimeDefault))[
        "process"]


def test_apparmor_enabled() -> None:
    rt = replace(RT, apparmor_enabled=True, apparmor_default_profile="tether-default")
    assert gen(rt=rt)["process"]["apparmorProfile"] == "tether-default"
    p = gen(with_apparmor(pb.SecurityProfile.Localhost, "my-prof"), rt=rt)["process"]
    assert p["apparmorProfile"] == "my-prof"
    assert "apparmorProfile" not in gen(with_apparmor(pb.SecurityProfile.Unconfined),
                                        rt=rt)["process"]
    assert "apparmorProfile" not in gen(privileged_cfg(), sb=sandbox(True), rt=rt)["process"]


# --- devices and resources ------------------------------------------------------------------

def test_devices_in_spec() -> None:
    c = cfg(devices=[pb.Device(host_path="/dev/fuse", container_path="/dev/fuse",
                               permissions="rwm")])
    s = gen(c, device_info={"/dev/fuse": ("c", 10, 229, 0o20666)})
    assert s["linux"]["devices"] == [{"path": "/dev/fuse", "type": "c", "major": 10,
                                      "minor": 229, "fileMode": 0o666, "uid": 0, "gid": 0}]
    assert s["linux"]["resources"]["devices"][-1] == {
        "allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"}
    with pytest.raises(InvalidArgument, match=r"devices\[0\]"):
        gen(c)


def test_privileged_devices() -> None:
    s = gen(privileged_cfg(), sb=sandbox(True),
            device_info={"/dev/sda": ("b", 8, 0, 0o60660)})
    assert s["linux"]["devices"][0]["path"] == "/dev/sda"
    assert s["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]


def test_resources_in_spec() -> None:
    c = cfg()
    r = c.linux.resources
    r.cpu_shares, r.cpu_quota, r.cpu_period = 256, 20000, 100000
    r.memory_limit_in_bytes = 128 << 20
    res = gen(c, rt=replace(RT, pids_limit=512))["linux"]["resources"]
    assert res["cpu"] == {"shares": 256, "quota": 20000, "period": 100000}
    assert res["memory"] == {"limit": 128 << 20}
    assert res["pids"] == {"limit": 512}


# --- exec -------------------------------------------------------------------------------------

def test_exec_process_inherits_the_container_identity() -> None:
    c = cfg()
    c.linux.security_context.run_as_username = "alice"
    c.linux.security_context.no_new_privs = True
    s = gen(c)
    p = oci.exec_process(s, ["ls", "-l"], tty=True)
    assert p["args"] == ["ls", "-l"] and p["terminal"] is True
    for k in ("user", "cwd", "capabilities", "noNewPrivileges"):
        assert p[k] == s["process"][k]
    assert "TERM=xterm" in p["env"]
    assert s["process"]["args"] != p["args"]  # the spec itself is untouched
    with pytest.raises(InvalidArgument, match="cmd"):
        oci.exec_process(s, [])


# --- typed input, no protobuf ------------------------------------------------------------------

def test_spec_without_protobuf() -> None:
    spec = ContainerSpec(
        name="app", attempt=0, image="busybox", command=("/bin/sh",), envs=(("A", "1"),),
        mounts=(Mount(container_path="/data", host_path="/h/data", readonly=True),),
        security=SecurityContext(pid=PidMode.CONTAINER, run_as_user=1000,
                                 seccomp=SecurityProfile("runtime", "", "x")),
        pod=PodConfig(name="web-0", namespace="default", uid="u1"))
    s = oci.generate("ctr1", spec, POD, IMAGE, FILES, "/rootfs", RT)
    assert s["process"]["args"] == ["/bin/sh"] and "A=1" in s["process"]["env"]
    assert s["process"]["user"]["uid"] == 1000
    assert {"destination": "/data", "type": "bind", "source": "/h/data",
            "options": ["rbind", "rprivate", "ro"]} in s["mounts"]
    assert s["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert s["annotations"]["io.kubernetes.cri.sandbox-name"] == "web-0"
    # what CreateContainer makes of the same request
    c = cfg(command=["/bin/sh"], envs=[pb.KeyValue(key="A", value=b"1")],
            mounts=[pb.Mount(container_path="/data", host_path="/h/data", readonly=True)])
    sc = c.linux.security_context
    sc.run_as_user.value = 1000
    sc.seccomp.profile_type = pb.SecurityProfile.RuntimeDefault
    assert oci.generate("ctr1", container_spec(c, sandbox()), POD, IMAGE, FILES, "/rootfs",
                        RT) == s
