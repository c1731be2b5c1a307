"""Container security contexts through the CRI, proven from inside the containers, with runc
and crun: users and groups, capabilities, no_new_privs, read-only rootfs, masked and read-only
paths, seccomp, AppArmor and devices."""

# The imported `ctr` fixture is a parameter name of every test and helper here.
# ruff: noqa: F811

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import grpc
import pytest

from shim.cri import api_pb2 as pb
from shim.oci.caps import ALL_CAPS, DEFAULT_CAPS
from tests.integration.test_containers import Ctr, ctr, log_lines  # noqa: F401
from tests.integration.test_sandbox import pod_config
from tests.rig.images import ImageRegistry

# --- helpers ----------------------------------------------------------------------------------


def sc(**kw: Any) -> pb.LinuxContainerConfig:
    return pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(**kw))


def pod(ctr: Ctr, name: str, *, privileged: bool = False,
        seccomp: pb.SecurityProfile | None = None) -> tuple[str, pb.PodSandboxConfig]:
    """A pod like ``ctr.pod`` whose security context may be privileged or carry a seccomp
    default for its containers."""
    cfg = pod_config(name)
    cfg.log_directory = str(ctr.log_dir / name)
    psc = cfg.linux.security_context
    psc.privileged = privileged
    if seccomp is not None:
        psc.seccomp.CopyFrom(seccomp)
    sid = ctr.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg, runtime_handler=ctr.handler),
                               timeout=60).pod_sandbox_id
    return sid, cfg


def run_sh(ctr: Ctr, sid: str, pcfg: pb.PodSandboxConfig, name: str, script: str,
           **kw: Any) -> tuple[int, str]:
    """Run ``sh -c script`` as the container's main process: (exit code, stdout+stderr)."""
    cid = ctr.run(sid, pcfg, name, ["sh", "-c", script], **kw)
    st = ctr.wait_exit(cid)
    text = "\n".join(t for _, _, t in log_lines(st.log_path))
    return st.exit_code, text


def values(text: str) -> dict[str, str]:
    """``key=value`` lines of a script's output."""
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            out[k.strip()] = v.strip()
    return out


def create_error(ctr: Ctr, sid: str, pcfg: pb.PodSandboxConfig, name: str,
                 **kw: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as e:
        ctr.create(sid, pcfg, name, ["true"], **kw)
    return e.value


def mask(names: Any) -> int:
    return sum(1 << ALL_CAPS.index(n) for n in set(names))


def host_bounding() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            return int(line.split()[1], 16)
    raise AssertionError("no CapBnd in /proc/self/status")


def with_image(ctr: Ctr, registry: ImageRegistry, name: str) -> Ctr:
    ref = registry.ref(name)
    ctr.env.cri.images.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref)), timeout=120)
    return dataclasses.replace(ctr, busybox=ref)


IDS = 'echo uid=$(id -u); echo gid=$(id -g); echo groups=$(id -G); echo home=$HOME'


def ids(ctr: Ctr, sid: str, pcfg: pb.PodSandboxConfig, name: str, **kw: Any) -> dict[str, Any]:
    code, text = run_sh(ctr, sid, pcfg, name, IDS, **kw)
    assert code == 0, text
    v: dict[str, Any] = values(text)
    v["groups"] = {int(g) for g in v["groups"].split()}
    v["uid"], v["gid"] = int(v["uid"]), int(v["gid"])
    return v


# --- users and groups -------------------------------------------------------------------------


def test_users_groups_and_home(ctr: Ctr, registry: ImageRegistry) -> None:
    u = with_image(ctr, registry, "user")
    sid, pcfg = u.pod("users")
    # The image's USER 1000:1000 (alice, member of staff 50), HOME from /etc/passwd.
    v = ids(u, sid, pcfg, "image-user")
    assert (v["uid"], v["gid"], v["home"]) == (1000, 1000, "/home/alice")
    assert v["groups"] == {1000, 50}
    # run_as_user: bob's passwd entry gives the group and HOME.
    v = ids(u, sid, pcfg, "uid-1001", linux=sc(run_as_user=pb.Int64Value(value=1001)))
    assert (v["uid"], v["gid"], v["home"], v["groups"]) == (1001, 1001, "/home/bob", {1001})
    # run_as_username, resolved in the image's /etc/passwd.
    v = ids(u, sid, pcfg, "name-bob", linux=sc(run_as_username="bob"))
    assert (v["uid"], v["gid"], v["home"]) == (1001, 1001, "/home/bob")
    v = ids(u, sid, pcfg, "name-root", linux=sc(run_as_username="root"))
    assert (v["uid"], v["gid"], v["home"]) == (0, 0, "/root")
    # run_as_group overrides the primary group; staff stays a supplementary group (Merge).
    v = ids(u, sid, pcfg, "group", linux=sc(run_as_user=pb.Int64Value(value=1000),
                                             run_as_group=pb.Int64Value(value=2000)))
    assert (v["uid"], v["gid"]) == (1000, 2000)
    assert v["groups"] == {2000, 50}
    # supplemental_groups: Merge keeps /etc/group's memberships, Strict only what is asked.
    v = ids(u, sid, pcfg, "merge", linux=sc(supplemental_groups=[4000, 4001]))
    assert v["groups"] == {1000, 50, 4000, 4001}
    v = ids(u, sid, pcfg, "strict", linux=sc(supplemental_groups=[4000],
                                              supplemental_groups_policy=pb.Strict))
    assert v["groups"] == {1000, 4000}
    # A uid with no passwd entry: gid 0, HOME /.
    v = ids(ctr, sid, pcfg, "unknown-uid", linux=sc(run_as_user=pb.Int64Value(value=4321)))
    assert (v["uid"], v["gid"], v["home"]) == (4321, 0, "/")
    # A user name the image does not know: refused, naming the field.
    err = create_error(u, sid, pcfg, "carol", linux=sc(run_as_username="carol"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "run_as_username" in (err.details() or "") and "carol" in (err.details() or "")


# --- capabilities and no_new_privs ------------------------------------------------------------

CAPS = "grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status | tr -d '\\t' " \
       "| sed 's/:/=/'"


def status_fields(ctr: Ctr, sid: str, pcfg: pb.PodSandboxConfig, name: str,
                  **kw: Any) -> dict[str, int]:
    code, text = run_sh(ctr, sid, pcfg, name, CAPS, **kw)
    assert code == 0, text
    v = values(text)
    return {"eff": int(v["CapEff"], 16), "prm": int(v["CapPrm"], 16),
            "bnd": int(v["CapBnd"], 16), "nnp": int(v["NoNewPrivs"]),
            "seccomp": int(v["Seccomp"])}


def caps_of(**kw: Any) -> pb.LinuxContainerConfig:
    return sc(capabilities=pb.Capability(**kw))


def test_capabilities(ctr: Ctr) -> None:
    host = host_bounding()
    default = mask(DEFAULT_CAPS) & host
    sid, pcfg = pod(ctr, "caps")
    f = status_fields(ctr, sid, pcfg, "default")
    assert f["eff"] == f["prm"] == f["bnd"] == default, f
    assert f["nnp"] == 0
    f = status_fields(ctr, sid, pcfg, "add", linux=caps_of(add_capabilities=["NET_ADMIN"]))
    assert f["eff"] == f["bnd"] == default | mask(["CAP_NET_ADMIN"])
    f = status_fields(ctr, sid, pcfg, "drop", linux=caps_of(drop_capabilities=["CHOWN"]))
    assert f["eff"] == f["bnd"] == default & ~mask(["CAP_CHOWN"])
    f = status_fields(ctr, sid, pcfg, "add-all", linux=caps_of(add_capabilities=["ALL"]))
    assert f["eff"] == f["bnd"] == host
    f = status_fields(ctr, sid, pcfg, "drop-all", linux=caps_of(drop_capabilities=["ALL"]))
    assert f["eff"] == f["prm"] == f["bnd"] == 0
    f = status_fields(ctr, sid, pcfg, "drop-all-add-one",
                      linux=caps_of(drop_capabilities=["ALL"], add_capabilities=["CAP_KILL"]))
    assert f["eff"] == f["bnd"] == mask(["CAP_KILL"])
    # A non-root user holds nothing effective; the bounding set is still the default.
    f = status_fields(ctr, sid, pcfg, "non-root", linux=sc(run_as_user=pb.Int64Value(value=1000)))
    assert (f["eff"], f["prm"], f["bnd"]) == (0, 0, default)
    f = status_fields(ctr, sid, pcfg, "nnp", linux=sc(no_new_privs=True))
    assert f["nnp"] == 1
    # An unknown capability name is refused, naming the field.
    err = create_error(ctr, sid, pcfg, "bogus", linux=caps_of(add_capabilities=["NOPE"]))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "add_capabilities" in (err.details() or "")


def test_privileged_container(ctr: Ctr) -> None:
    host = host_bounding()
    sid, pcfg = pod(ctr, "priv", privileged=True)
    f = status_fields(ctr, sid, pcfg, "priv", linux=sc(privileged=True))
    assert f["eff"] == f["bnd"] == host
    assert f["seccomp"] == 0  # privileged: unconfined
    # Nothing masked or read-only; /sys and /proc/sys writable; host devices present.
    _, out = run_sh(ctr, sid, pcfg, "paths", "grep -E ' /proc/(timer_list|sys|keys) ' "
                    "/proc/self/mountinfo; echo masked=$?; [ -c /proc/keys ]; echo chr=$?; "
                    "echo firmware=$(ls -A /sys/firmware | wc -l); "
                    "grep ' /sys ' /proc/self/mountinfo | grep -q ' rw,'; echo sysrw=$?; "
                    "[ -c /dev/kmsg ]; echo kmsg=$?", linux=sc(privileged=True))
    v = values(out)
    assert (v["masked"], v["chr"], v["sysrw"], v["kmsg"]) == ("1", "1", "0", "0"), out
    assert v["firmware"] != "0", out
    # A privileged container in an unprivileged pod is refused.
    sid2, pcfg2 = pod(ctr, "notpriv")
    err = create_error(ctr, sid2, pcfg2, "priv", linux=sc(privileged=True))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- filesystem: read-only rootfs, masked and read-only paths ----------------------------------


def test_readonly_rootfs_and_writable_mount(ctr: Ctr, tmp_path: Path) -> None:
    sid, pcfg = pod(ctr, "ro")
    data = tmp_path / "emptydir"
    data.mkdir()
    script = ("touch /newfile 2>&1; echo root=$?; echo x > /etc/motd 2>&1; echo etc=$?; "
              "echo hello > /data/f; echo data=$?; cat /data/f")
    _, out = run_sh(ctr, sid, pcfg, "ro", script,
                    linux=sc(readonly_rootfs=True),
                    mounts=[pb.Mount(container_path="/data", host_path=str(data))])
    v = values(out)
    assert v["root"] != "0" and v["etc"] != "0", out
    assert "Read-only file system" in out
    assert v["data"] == "0" and "hello" in out.splitlines()
    assert (data / "f").read_text() == "hello\n"
    # Without readonly_rootfs the same write works.
    _, out = run_sh(ctr, sid, pcfg, "rw", "touch /newfile; echo root=$?")
    assert values(out)["root"] == "0"


def test_masked_and_readonly_paths(ctr: Ctr) -> None:
    # (/proc/kcore is absent on this kernel: /proc/keys and /proc/timer_list are masked files
    # that exist; /sys/firmware is a non-empty directory on the node.)
    assert os.listdir("/sys/firmware")
    sid, pcfg = pod(ctr, "masked")
    script = ("[ -c /proc/keys ]; echo keys_chr=$?; echo keys_bytes=$(head -c 16 /proc/keys "
              "| wc -c); echo timer_bytes=$(head -c 16 /proc/timer_list | wc -c); "
              "echo firmware=$(ls -A /sys/firmware | wc -l); "
              "echo x > /proc/sys/kernel/domainname; echo procsys=$?; "
              "echo bus_ro=$(grep ' /proc/bus ' /proc/self/mountinfo | grep -c ' ro,')")
    _, out = run_sh(ctr, sid, pcfg, "default", script)
    v = values(out)
    assert (v["keys_chr"], v["keys_bytes"], v["timer_bytes"], v["firmware"]) == \
        ("0", "0", "0", "0"), out
    assert v["procsys"] != "0" and "Read-only file system" in out, out
    assert v["bus_ro"] == "1", out
    # The security context's own lists replace the defaults.
    _, out = run_sh(ctr, sid, pcfg, "custom", "[ -c /proc/keys ]; echo keys_chr=$?; "
                    "echo cpuinfo_bytes=$(head -c 16 /proc/cpuinfo | wc -c); "
                    "echo hi > /proc/sys/kernel/domainname; echo procsys=$?; "
                    "echo bus_ro=$(grep ' /proc/bus ' /proc/self/mountinfo | grep -c ' ro,')",
                    linux=sc(masked_paths=["/proc/cpuinfo"], readonly_paths=["/proc/bus"]))
    v = values(out)
    assert (v["keys_chr"], v["cpuinfo_bytes"], v["bus_ro"]) == ("1", "0", "1"), out
    # /proc/sys is not read-only any more (writing the UTS namespace's domainname still needs
    # CAP_SYS_ADMIN, so the write fails for another reason).
    assert "Read-only file system" not in out, out


# --- seccomp and AppArmor ---------------------------------------------------------------------

UNSHARE = "unshare -U true 2>&1; echo unshare=$?; grep Seccomp: /proc/self/status | tr -d '\\t'"\
          " | sed 's/:/=/'"

RUNTIME_DEFAULT = pb.SecurityProfile(profile_type=pb.SecurityProfile.RuntimeDefault)
UNCONFINED = pb.SecurityProfile(profile_type=pb.SecurityProfile.Unconfined)


def localhost(path: str) -> pb.SecurityProfile:
    return pb.SecurityProfile(profile_type=pb.SecurityProfile.Localhost, localhost_ref=path)


def test_seccomp_profiles(ctr: Ctr, tmp_path: Path) -> None:
    sid, pcfg = pod(ctr, "seccomp")
    admin = pb.Capability(add_capabilities=["SYS_ADMIN"])
    # RuntimeDefault: user namespaces refused without CAP_SYS_ADMIN.
    _, out = run_sh(ctr, sid, pcfg, "default", UNSHARE, linux=sc(seccomp=RUNTIME_DEFAULT))
    v = values(out)
    assert v["unshare"] != "0" and "Operation not permitted" in out, out
    assert v["Seccomp"] == "2"
    # Unconfined (with CAP_SYS_ADMIN): allowed, no filter at all.
    _, out = run_sh(ctr, sid, pcfg, "unconfined", UNSHARE,
                    linux=sc(seccomp=UNCONFINED, capabilities=admin))
    v = values(out)
    assert (v["unshare"], v["Seccomp"]) == ("0", "0"), out
    # No profile anywhere: the kubelet's default, unconfined.
    _, out = run_sh(ctr, sid, pcfg, "none", UNSHARE)
    assert values(out)["Seccomp"] == "0", out
    # Localhost: a profile file that refuses mkdir/mkdirat with EPERM and allows the rest.
    profile = tmp_path / "no-mkdir.json"
    profile.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
    }))
    _, out = run_sh(ctr, sid, pcfg, "localhost",
                    "mkdir /tmp/d 2>&1; echo mkdir=$?; touch /tmp/f; echo touch=$?; " + UNSHARE,
                    linux=sc(seccomp=localhost(str(profile))))
    v = values(out)
    assert v["mkdir"] != "0" and "Operation not permitted" in out, out
    assert (v["touch"], v["Seccomp"]) == ("0", "2"), out
    # A Localhost profile that does not exist: refused at create, naming the file.
    missing = str(tmp_path / "missing.json")
    err = create_error(ctr, sid, pcfg, "missing", linux=sc(seccomp=localhost(missing)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = err.details() or ""
    assert missing in details and "linux.security_context.seccomp" in details, details


def test_pod_seccomp_default_applies(ctr: Ctr) -> None:
    sid, pcfg = pod(ctr, "podsec", seccomp=RUNTIME_DEFAULT)
    _, out = run_sh(ctr, sid, pcfg, "inherits", UNSHARE)
    v = values(out)
    assert v["unshare"] != "0" and v["Seccomp"] == "2", out
    # The container's own setting wins over the pod's.
    _, out = run_sh(ctr, sid, pcfg, "own", UNSHARE,
                    linux=sc(seccomp=UNCONFINED,
                             capabilities=pb.Capability(add_capabilities=["SYS_ADMIN"])))
    v = values(out)
    assert (v["unshare"], v["Seccomp"]) == ("0", "0"), out


@pytest.mark.skipif(os.path.exists("/sys/module/apparmor/parameters/enabled") and
                    Path("/sys/module/apparmor/parameters/enabled").read_text().strip() == "Y",
                    reason="AppArmor is enabled on this node")
def test_apparmor_localhost_refused_without_apparmor(ctr: Ctr) -> None:
    sid, pcfg = pod(ctr, "aa")
    err = create_error(ctr, sid, pcfg, "aa", linux=sc(apparmor=pb.SecurityProfile(
        profile_type=pb.SecurityProfile.Localhost, localhost_ref="my-profile")))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = err.details() or ""
    assert "AppArmor" in details and "my-profile" in details and "not enabled" in details
    # RuntimeDefault on such a node runs unconfined.
    code, out = run_sh(ctr, sid, pcfg, "rd", "cat /proc/self/attr/current 2>&1; true",
                       linux=sc(apparmor=RUNTIME_DEFAULT))
    assert code == 0, out


# --- devices ----------------------------------------------------------------------------------


def test_cri_device(ctr: Ctr) -> None:
    sid, pcfg = pod(ctr, "dev")
    script = ("[ -c /dev/mynull ]; echo chr=$?; echo hi > /dev/mynull; echo write=$?; "
              "echo size=$(wc -c < /dev/mynull); echo mm=$(stat -c '%t:%T' /dev/mynull)")
    _, out = run_sh(ctr, sid, pcfg, "dev", script, devices=[
        pb.Device(host_path="/dev/null", container_path="/dev/mynull", permissions="rwm")])
    v = values(out)
    assert (v["chr"], v["write"], v["size"], v["mm"]) == ("0", "0", "0", "1:3"), out
    # Read permission only: the device cgroup refuses opening it for writing.
    _, out = run_sh(ctr, sid, pcfg, "dev-ro",
                    "[ -c /dev/mykmsg ]; echo chr=$?; echo x > /dev/mykmsg; echo write=$?",
                    devices=[pb.Device(host_path="/dev/kmsg", container_path="/dev/mykmsg",
                                       permissions="r")])
    v = values(out)
    assert v["chr"] == "0" and v["write"] != "0", out
    assert "Operation not permitted" in out
    # A host path that is not there: refused.
    err = create_error(ctr, sid, pcfg, "nodev", devices=[
        pb.Device(host_path="/dev/no-such-device", container_path="/dev/x", permissions="rwm")])
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
