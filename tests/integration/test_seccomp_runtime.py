"""The seccomp profiles of shim.oci.seccomp, applied by the real runtimes (runc and crun).

Each test builds a minimal bundle of its own: a rootfs holding Debian's static busybox (plus
sh/unshare/id/true links) and a small config.json (pid/ipc/uts/mount namespaces, no network
namespace; a unique cgroup under /tether-test that is removed afterwards), then runs it in
the foreground with ``RUNTIME --root STATE run --bundle DIR ID`` and reads its output.

crun 1.8 refuses hybrid cgroup hosts while a controller is left on cgroup2 ("cgroups in
hybrid mode not supported"); its cases are skipped there (/work/shared/lab/cgroups.sh fix
mounts the stray controller on v1).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shim.oci.seccomp import convert_profile, default_profile

BUSYBOX = Path("/bin/busybox")
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_PARENT = "tether-test"
APPLETS = ("sh", "unshare", "id", "true", "cat")

# a plain unprivileged-ish root container (Docker-like set), and the same plus CAP_SYS_ADMIN
BASE_CAPS = frozenset(
    {
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
    }
)
ADMIN_CAPS = BASE_CAPS | {"CAP_SYS_ADMIN"}

# `unshare -U` makes a user namespace (no capability needed), `unshare -n` a network one
# (CAP_SYS_ADMIN needed). Each reports its own exit status.
# `echo | cat` needs pipe2 and a fork (clone without namespace flags).
SCRIPT = "unshare -U true; echo userns=$?; unshare -n true; echo netns=$?; echo piped | cat; id -u"

# A dynamically linked glibc program (the host's python3, with /usr, /lib, /lib64 and /etc
# bound read-only): threads (clone3 -> ENOSYS -> clone fallback), subprocesses, pipes,
# sockets, and the calls RuntimeDefault must refuse, each printed as name=errno.
PYTHON = "/usr/bin/python3"
PY_SCRIPT = '''
import ctypes, socket, subprocess, threading
libc = ctypes.CDLL(None, use_errno=True)
def errno(rc):
    return 0 if rc >= 0 else ctypes.get_errno()
seen = []
t = threading.Thread(target=seen.append, args=(1,)); t.start(); t.join()
print("thread=%d" % (0 if seen == [1] else 1))
print("spawn=%d" % subprocess.run(["/bin/sh", "-c", "echo x | cat >/dev/null"]).returncode)
socket.socket(socket.AF_UNIX).close(); socket.socket(socket.AF_INET).close()
print("socket=0")
try:
    socket.socket(40, socket.SOCK_STREAM); print("vsock=0")
except OSError as e:
    print("vsock=%d" % e.errno)
libc.personality.argtypes = [ctypes.c_ulong]
print("personality_query=%d" % errno(libc.personality(0xFFFFFFFF)))
print("personality_norandom=%d" % errno(libc.personality(0x0040000)))
print("clone3=%d" % errno(libc.syscall(435, 0, 0)))
print("unshare=%d" % errno(libc.unshare(0x10000000)))
print("keyctl=%d" % errno(libc.syscall(250, 0, 0)))
print("io_uring_setup=%d" % errno(libc.syscall(425, 1, 0)))
print("userfaultfd=%d" % errno(libc.syscall(323, 0)))
'''


def _is_static_elf(path: Path) -> bool:
    """True when ``path`` is an ELF executable without a program interpreter."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:  # 64-bit only (this host)
        return False
    endian = "<" if data[5] == 1 else ">"
    (phoff,) = struct.unpack_from(endian + "Q", data, 0x20)
    phentsize, phnum = struct.unpack_from(endian + "HH", data, 0x36)
    for i in range(phnum):
        (p_type,) = struct.unpack_from(endian + "I", data, phoff + i * phentsize)
        if p_type == 3:  # PT_INTERP
            return False
    return True


def _crun_problem() -> str | None:
    if shutil.which("crun") is None:
        return "crun is not installed"
    controllers = CGROUP_ROOT / "unified" / "cgroup.controllers"
    if controllers.exists() and controllers.read_text().strip():
        return (
            "crun 1.8 refuses hybrid cgroups with controllers on cgroup2 "
            f"({controllers.read_text().strip()}); run /work/shared/lab/cgroups.sh fix"
        )
    return None


RUNTIMES = [
    pytest.param("runc", id="runc"),
    pytest.param(
        "crun",
        id="crun",
        marks=pytest.mark.skipif(_crun_problem() is not None, reason=str(_crun_problem())),
    ),
]


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not BUSYBOX.exists() or not _is_static_elf(BUSYBOX):
        pytest.fail(f"{BUSYBOX} missing or not static: install busybox-static", pytrace=False)
    root = tmp_path_factory.mktemp("seccomp-rootfs")
    (root / "bin").mkdir()
    for d in ("proc", "dev", "tmp", "usr", "lib", "lib64", "etc"):
        (root / d).mkdir()
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    return root


def _cgroup_dirs(path: str) -> list[Path]:
    """The directories a runtime makes for cgroupsPath ``path`` in every hierarchy."""
    rel = path.lstrip("/")
    dirs = []
    for hierarchy in CGROUP_ROOT.iterdir():
        if hierarchy.is_dir() and not hierarchy.is_symlink():
            dirs.append(hierarchy / rel)
    return dirs


class Runner:
    """Runs one-shot containers with a given runtime; removes what it made."""

    def __init__(self, runtime: str, base: Path, rootfs: Path) -> None:
        self.runtime = runtime
        self.base = base
        self.rootfs = rootfs
        self.state = base / "state"
        self.state.mkdir()
        self.ids: list[str] = []
        self.cgroups: list[str] = []

    def config(
        self,
        caps: frozenset[str],
        seccomp: dict[str, Any] | None,
        args: list[str],
        binds: tuple[str, ...],
    ) -> dict[str, Any]:
        cid = f"tether-seccomp-{uuid.uuid4().hex[:12]}"
        cgroup = f"/{CGROUP_PARENT}/{cid}"
        self.cgroups.append(cgroup)
        cap_list = sorted(caps)
        linux: dict[str, Any] = {
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount")],
            "cgroupsPath": cgroup,
            "maskedPaths": ["/proc/kcore", "/proc/keys"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"],
        }
        if seccomp is not None:
            linux["seccomp"] = seccomp
        return {
            "ociVersion": "1.0.2",
            "process": {
                "terminal": False,
                "user": {"uid": 0, "gid": 0},
                "args": args,
                "env": ["PATH=/bin"],
                "cwd": "/",
                "noNewPrivileges": True,
                "capabilities": {
                    "bounding": cap_list,
                    "effective": cap_list,
                    "permitted": cap_list,
                },
            },
            "root": {"path": str(self.rootfs), "readonly": True},
            "hostname": "seccomp-test",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {
                    "destination": "/dev",
                    "type": "tmpfs",
                    "source": "tmpfs",
                    "options": ["nosuid", "strictatime", "mode=755", "size=1024k"],
                },
                {
                    "destination": "/tmp",
                    "type": "tmpfs",
                    "source": "tmpfs",
                    "options": ["nosuid", "nodev", "size=1024k"],
                },
                *(
                    {"destination": d, "type": "bind", "source": d, "options": ["rbind", "ro"]}
                    for d in binds
                ),
            ],
            "linux": linux,
            "annotations": {"id": cid},
        }

    def run(
        self,
        caps: frozenset[str],
        seccomp: dict[str, Any] | None,
        args: list[str] | None = None,
        binds: tuple[str, ...] = (),
    ) -> subprocess.CompletedProcess[str]:
        cfg = self.config(caps, seccomp, args or ["sh", "-c", SCRIPT], binds)
        cid = cfg["annotations"]["id"]
        bundle = self.base / cid
        bundle.mkdir()
        (bundle / "config.json").write_text(json.dumps(cfg, indent=1))
        self.ids.append(cid)
        cmd = [self.runtime, "--root", str(self.state), "run", "--bundle", str(bundle), cid]
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
        )

    def cleanup(self) -> None:
        for cid in self.ids:
            subprocess.run(
                [self.runtime, "--root", str(self.state), "delete", "-f", cid],
                capture_output=True,
                timeout=30,
            )
        for cgroup in self.cgroups:
            for d in _cgroup_dirs(cgroup):
                # busy or gone: nothing of ours is left running after delete; the parent
                # goes too unless someone else has a cgroup in it
                for path in (d, d.parent):
                    if path.is_dir():
                        with contextlib.suppress(OSError):
                            path.rmdir()


@pytest.fixture
def runner(request: pytest.FixtureRequest, rootfs: Path, tmp_path: Path) -> Iterator[Runner]:
    r = Runner(request.param, tmp_path, rootfs)
    try:
        yield r
    finally:
        r.cleanup()


def _results(proc: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert proc.returncode == 0, f"runtime failed ({proc.returncode}): {proc.stderr}"
    out = {}
    for line in proc.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value
    lines = proc.stdout.splitlines()
    out["uid"] = lines[-1] if lines else ""
    out["piped"] = "yes" if "piped" in lines else "no"
    return out


@pytest.mark.parametrize("runner", RUNTIMES, indirect=True)
def test_default_profile_blocks_namespaces(runner: Runner) -> None:
    proc = runner.run(BASE_CAPS, default_profile(BASE_CAPS))
    res = _results(proc)
    assert res["uid"] == "0"  # the container ran: exec, fork (filtered clone), id
    assert res["piped"] == "yes"  # pipe2
    assert res["userns"] != "0" and res["netns"] != "0", proc.stdout
    assert proc.stderr.count("Operation not permitted") == 2, proc.stderr


@pytest.mark.parametrize("runner", RUNTIMES, indirect=True)
def test_without_seccomp_namespaces_succeed(runner: Runner) -> None:
    proc = runner.run(ADMIN_CAPS, None)
    res = _results(proc)
    assert res == {"userns": "0", "netns": "0", "piped": "yes", "uid": "0"}, proc.stderr


@pytest.mark.parametrize("runner", RUNTIMES, indirect=True)
def test_default_profile_with_sys_admin_allows_namespaces(runner: Runner) -> None:
    proc = runner.run(ADMIN_CAPS, default_profile(ADMIN_CAPS))
    res = _results(proc)
    assert res == {"userns": "0", "netns": "0", "piped": "yes", "uid": "0"}, proc.stderr


@pytest.mark.parametrize("runner", RUNTIMES, indirect=True)
def test_default_profile_sys_admin_without_seccomp_group_still_blocked(runner: Runner) -> None:
    # The container holds CAP_SYS_ADMIN but the profile was made for BASE_CAPS: seccomp wins.
    proc = runner.run(ADMIN_CAPS, default_profile(BASE_CAPS))
    res = _results(proc)
    assert res["userns"] != "0" and res["netns"] != "0", proc.stdout


@pytest.mark.parametrize("runner", RUNTIMES, indirect=True)
def test_localhost_docker_format_profile(runner: Runner) -> None:
    # Docker-format profile: allow by default, deny unshare with EACCES; flags and a rule
    # repeating the default action are dropped so that runc 1.1 accepts the result.
    profile = convert_profile(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "archMap": [
                {
                    "architecture": "SCMP_ARCH_X86_64",
                    "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                },
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
            ],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [
                {"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                {"names": ["getpid"], "action": "SCMP_ACT_ALLOW", "comment": "no-op"},
                {"names": ["mkdir"], "action": "SCMP_ACT_LOG"},
            ],
        },
        source="inline",
    )
    proc = runner.run(ADMIN_CAPS, profile)
    res = _results(proc)
    assert res["userns"] != "0" and res["netns"] != "0", proc.stdout
    assert proc.stderr.count("Permission denied") == 2, proc.stderr


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="syscall numbers are x86_64's")
@pytest.mark.parametrize("runner", RUNTIMES, indirect=True)
def test_default_profile_runs_a_glibc_program(runner: Runner) -> None:
    if not Path(PYTHON).exists():
        pytest.skip(f"{PYTHON} not installed")
    binds = tuple(d for d in ("/usr", "/lib", "/lib64", "/etc") if Path(d).is_dir())
    proc = runner.run(BASE_CAPS, default_profile(BASE_CAPS), [PYTHON, "-c", PY_SCRIPT], binds)
    assert proc.returncode == 0, f"runtime failed ({proc.returncode}): {proc.stderr}"
    res = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    assert res == {
        "thread": "0",
        "spawn": "0",
        "socket": "0",
        "vsock": "1",  # EPERM
        "personality_query": "0",
        "personality_norandom": "1",
        "clone3": "38",  # ENOSYS: glibc falls back to clone
        "unshare": "1",
        "keyctl": "1",
        "io_uring_setup": "1",
        "userfaultfd": "1",
    }, proc.stdout + proc.stderr
