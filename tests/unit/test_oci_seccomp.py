"""shim.oci.seccomp: the RuntimeDefault profile and Localhost profile loading."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from shim.errors import InvalidArgument
from shim.oci.seccomp import (
    ACTIONS,
    CLONE_NS_FLAGS,
    OPS,
    convert_profile,
    default_profile,
    load_localhost,
    syscall_names,
)

X86 = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
ARM = ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]

ALWAYS_BLOCKED = [
    "keyctl", "add_key", "request_key", "kexec_load", "kexec_file_load", "swapon", "swapoff",
    "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register", "pivot_root",
    "uselib", "nfsservctl", "_sysctl",
]  # fmt: skip
BLOCKED_WITHOUT_CAPS = [
    "unshare", "mount", "umount2", "setns", "init_module", "finit_module", "delete_module",
    "reboot", "bpf", "perf_event_open", "chroot", "acct", "settimeofday", "clock_settime",
    "iopl", "ioperm", "syslog", "kcmp", "open_by_handle_at", "mbind", "vhangup",
    "sethostname", "fsopen", "open_tree",
]  # fmt: skip
ESSENTIAL = [
    "read", "write", "openat", "close", "mmap", "execve", "exit_group", "futex", "rt_sigaction",
    "socketpair", "bind", "connect", "accept4", "epoll_wait", "getrandom", "wait4", "fork",
    "statx", "newfstatat", "prctl", "setuid", "rseq", "arch_prctl", "ptrace", "pipe2", "pipe",
    "dup3", "fcntl", "clock_gettime", "nanosleep", "sched_yield", "getdents64", "madvise",
]  # fmt: skip


def mentioned(profile: dict[str, Any]) -> set[str]:
    return {n for rule in profile["syscalls"] for n in rule["names"]}


def rules_for(profile: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [r for r in profile["syscalls"] if name in r["names"]]


# --------------------------------------------------------------------------- default_profile


def test_default_shape() -> None:
    p = default_profile(arch="x86_64")
    assert p["defaultAction"] == "SCMP_ACT_ERRNO"
    assert p["defaultErrnoRet"] == 1
    assert p["architectures"] == X86
    assert set(p) == {"defaultAction", "defaultErrnoRet", "architectures", "syscalls"}
    for rule in p["syscalls"]:
        assert set(rule) <= {"names", "action", "errnoRet", "args"}
        assert rule["names"] and all(isinstance(n, str) and n for n in rule["names"])
        assert rule["action"] in ACTIONS
        for a in rule.get("args", []):
            assert set(a) == {"index", "value", "valueTwo", "op"}
            assert a["op"] in OPS and 0 <= a["index"] <= 5


@pytest.mark.parametrize(
    ("arch", "expected"),
    [
        ("x86_64", X86),
        ("amd64", X86),
        ("aarch64", ARM),
        ("arm64", ARM),
        ("s390x", ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"]),
        ("sparc64", []),  # unknown: the runtime filters the native ABI only
    ],
)
def test_architectures_per_arch(arch: str, expected: list[str]) -> None:
    assert default_profile(arch=arch)["architectures"] == expected


def test_architectures_default_to_this_machine() -> None:
    machine = os.uname().machine
    assert default_profile()["architectures"] == default_profile(arch=machine)["architectures"]


def test_json_serialisable_round_trip() -> None:
    for caps in (frozenset(), frozenset({"CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_BPF"})):
        p = default_profile(caps, "x86_64")
        assert json.loads(json.dumps(p)) == p


@pytest.mark.parametrize("name", ALWAYS_BLOCKED + BLOCKED_WITHOUT_CAPS)
def test_blocked_by_default(name: str) -> None:
    assert name not in mentioned(default_profile(arch="x86_64"))


def test_always_blocked_even_with_every_cap() -> None:
    every = frozenset(
        {
            "CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_MODULE", "CAP_SYS_BOOT", "CAP_SYS_TIME",
            "CAP_SYS_NICE", "CAP_SYSLOG", "CAP_SYS_RAWIO", "CAP_SYS_PACCT", "CAP_SYS_CHROOT",
            "CAP_BPF", "CAP_PERFMON", "CAP_DAC_READ_SEARCH", "CAP_SYS_TTY_CONFIG", "CAP_NET_ADMIN",
        }
    )  # fmt: skip
    names = mentioned(default_profile(every, "x86_64"))
    assert not names & set(ALWAYS_BLOCKED)


@pytest.mark.parametrize("name", ESSENTIAL)
def test_essential_calls_allowed(name: str) -> None:
    assert name in syscall_names(default_profile(arch="x86_64"))


@pytest.mark.parametrize(
    ("cap", "names"),
    [
        ("CAP_SYS_ADMIN", ["unshare", "mount", "umount2", "setns", "bpf", "perf_event_open",
                           "sethostname", "fsopen", "clone", "clone3"]),
        ("CAP_SYS_PTRACE", ["kcmp", "pidfd_getfd", "process_madvise"]),
        ("CAP_SYS_MODULE", ["init_module", "finit_module", "delete_module"]),
        ("CAP_SYS_BOOT", ["reboot"]),
        ("CAP_SYS_TIME", ["settimeofday", "clock_settime", "stime"]),
        ("CAP_SYS_NICE", ["mbind", "set_mempolicy", "get_mempolicy"]),
        ("CAP_SYSLOG", ["syslog"]),
        ("CAP_SYS_RAWIO", ["iopl", "ioperm"]),
        ("CAP_SYS_PACCT", ["acct"]),
        ("CAP_SYS_CHROOT", ["chroot"]),
        ("CAP_BPF", ["bpf"]),
        ("CAP_PERFMON", ["perf_event_open"]),
        ("CAP_DAC_READ_SEARCH", ["open_by_handle_at"]),
        ("CAP_SYS_TTY_CONFIG", ["vhangup"]),
    ],
)  # fmt: skip
def test_capability_groups(cap: str, names: list[str]) -> None:
    without = syscall_names(default_profile(frozenset(), "x86_64"))
    with_cap = syscall_names(default_profile(frozenset({cap}), "x86_64"))
    for name in names:
        assert name not in without, name
        assert name in with_cap, name


def test_capability_without_prefix_accepted() -> None:
    assert "unshare" in syscall_names(default_profile(frozenset({"SYS_ADMIN"}), "x86_64"))


def test_cap_groups_do_not_leak() -> None:
    names = syscall_names(default_profile(frozenset({"CAP_BPF"}), "x86_64"))
    assert "bpf" in names
    assert not {"mount", "unshare", "perf_event_open"} & names


def test_clone_without_sys_admin_filters_namespace_flags() -> None:
    p = default_profile(arch="x86_64")
    (clone,) = rules_for(p, "clone")
    assert clone["action"] == "SCMP_ACT_ALLOW"
    assert clone["names"] == ["clone"]
    assert clone["args"] == [
        {"index": 0, "value": CLONE_NS_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
    ]
    # CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
    assert CLONE_NS_FLAGS == 0x7E020000
    # the threads/fork flags glibc uses pass the mask
    thread_flags = 0x3D0F00  # CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|*TID
    assert thread_flags & CLONE_NS_FLAGS == 0


def test_clone_on_s390_filters_argument_1() -> None:
    (clone,) = rules_for(default_profile(arch="s390x"), "clone")
    assert clone["args"][0]["index"] == 1


def test_clone3_enosys_without_sys_admin() -> None:
    (clone3,) = rules_for(default_profile(arch="x86_64"), "clone3")
    assert clone3 == {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}


def test_clone_and_clone3_plain_with_sys_admin() -> None:
    p = default_profile(frozenset({"CAP_SYS_ADMIN"}), "x86_64")
    for name in ("clone", "clone3"):
        (rule,) = rules_for(p, name)
        assert rule["action"] == "SCMP_ACT_ALLOW" and "args" not in rule


def test_personality_only_known_personas() -> None:
    rules = rules_for(default_profile(arch="x86_64"), "personality")
    values = sorted(r["args"][0]["value"] for r in rules)
    assert values == [0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF]
    for r in rules:
        assert r["names"] == ["personality"]
        assert r["args"][0]["op"] == "SCMP_CMP_EQ" and r["args"][0]["index"] == 0


def test_socket_blocks_vsock_only() -> None:
    (sock,) = rules_for(default_profile(arch="x86_64"), "socket")
    assert sock["args"] == [{"index": 0, "value": 40, "valueTwo": 0, "op": "SCMP_CMP_NE"}]


def test_arch_specific_calls() -> None:
    x86 = syscall_names(default_profile(arch="x86_64"))
    arm = syscall_names(default_profile(arch="aarch64"))
    assert {"arch_prctl", "modify_ldt"} <= x86
    assert not {"arch_prctl", "modify_ldt"} & arm
    assert {"cacheflush", "set_tls", "arm_fadvise64_64"} <= arm
    assert not {"cacheflush", "set_tls"} & x86


@pytest.mark.parametrize(
    "caps",
    [
        frozenset(),
        frozenset({"CAP_SYS_ADMIN"}),
        frozenset({"CAP_SYS_ADMIN", "CAP_SYSLOG", "CAP_SYS_PTRACE", "CAP_BPF", "CAP_PERFMON"}),
    ],
)
@pytest.mark.parametrize("arch", ["x86_64", "aarch64", "s390x"])
def test_no_duplicate_rules(caps: frozenset[str], arch: str) -> None:
    p = default_profile(caps, arch)
    keys = Counter(
        (name, r["action"], r.get("errnoRet"), json.dumps(r.get("args"), sort_keys=True))
        for r in p["syscalls"]
        for name in r["names"]
    )
    assert [k for k, n in keys.items() if n > 1] == []
    # and no name is both allowed and denied without arguments
    plain: dict[str, set[str]] = {}
    for r in p["syscalls"]:
        if not r.get("args"):
            for name in r["names"]:
                plain.setdefault(name, set()).add(r["action"])
    assert [n for n, acts in plain.items() if len(acts) > 1] == []


def test_returns_fresh_objects() -> None:
    a = default_profile(arch="x86_64")
    a["syscalls"][0]["names"].append("kexec_load")
    a["syscalls"][2]["args"][0]["value"] = 99
    b = default_profile(arch="x86_64")
    assert "kexec_load" not in mentioned(b)
    assert b["syscalls"][2]["args"][0]["value"] != 99


# --------------------------------------------------------------------------- load_localhost


def write(tmp_path: Path, data: Any, name: str = "profile.json") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


DOCKER_PROFILE: dict[str, Any] = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "archMap": [
        {"architecture": "SCMP_ARCH_X86_64",
         "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
        {"architecture": "SCMP_ARCH_RISCV64", "subArchitectures": None},
    ],
    "syscalls": [
        {"names": ["read", "write", "execve", "exit_group"], "action": "SCMP_ACT_ALLOW",
         "args": [], "comment": "", "includes": {}, "excludes": {}},
        {"name": "getpid", "action": "SCMP_ACT_ALLOW", "args": None},
        {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
        {"names": ["uname"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}},
        {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW",
         "includes": {"arches": ["amd64", "x32"]}},
        {"names": ["cacheflush"], "action": "SCMP_ACT_ALLOW",
         "includes": {"arches": ["arm", "arm64"]}},
        {"names": ["mount", "unshare"], "action": "SCMP_ACT_ALLOW",
         "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}],
         "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
         "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["kexec_load"], "action": "SCMP_ACT_ERRNO", "comment": "same as default"},
        {"names": ["mkdir"], "action": "SCMP_ACT_LOG"},
    ],
}  # fmt: skip


def test_load_docker_format(tmp_path: Path) -> None:
    p = load_localhost(write(tmp_path, DOCKER_PROFILE), arch="x86_64", kernel="6.1.0-18-amd64")
    assert p["defaultAction"] == "SCMP_ACT_ERRNO"
    assert p["defaultErrnoRet"] == 1
    assert p["architectures"] == X86
    assert json.loads(json.dumps(p)) == p
    allowed = syscall_names(p)
    assert {"read", "write", "execve", "exit_group", "getpid", "ptrace", "arch_prctl"} <= allowed
    assert "uname" not in allowed  # minKernel 99.0
    assert "cacheflush" not in allowed  # arm only
    assert not {"mount", "unshare"} & allowed  # no CAP_SYS_ADMIN given
    (clone,) = rules_for(p, "clone")
    assert clone["args"] == [
        {"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
    ]
    (clone3,) = rules_for(p, "clone3")
    assert clone3["errnoRet"] == 38
    assert rules_for(p, "kexec_load") == []  # same as the default action: dropped
    assert rules_for(p, "mkdir") == [{"names": ["mkdir"], "action": "SCMP_ACT_LOG"}]
    for rule in p["syscalls"]:
        assert not {"comment", "includes", "excludes", "name"} & set(rule)


def test_load_docker_format_with_caps_and_arm(tmp_path: Path) -> None:
    path = write(tmp_path, DOCKER_PROFILE)
    p = load_localhost(path, capabilities={"CAP_SYS_ADMIN"}, arch="aarch64", kernel="4.4.0")
    assert p["architectures"] == ARM
    allowed = syscall_names(p)
    assert {"mount", "unshare", "cacheflush"} <= allowed
    assert "ptrace" not in allowed  # minKernel 4.8 > 4.4
    assert "arch_prctl" not in allowed
    assert rules_for(p, "clone") == [] and rules_for(p, "clone3") == []


def test_archmap_without_this_arch_gives_native_only(tmp_path: Path) -> None:
    p = load_localhost(write(tmp_path, DOCKER_PROFILE), arch="s390x")
    assert p["architectures"] == []


def test_load_oci_format(tmp_path: Path) -> None:
    oci = default_profile(frozenset({"CAP_NET_ADMIN"}), "x86_64")
    assert load_localhost(write(tmp_path, oci), arch="x86_64") == oci


def test_load_minimal_allow_default(tmp_path: Path) -> None:
    data = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [
            {"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},  # same as default: dropped
        ],
    }
    p = load_localhost(write(tmp_path, data), arch="x86_64")
    assert p == {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}],
    }  # flags dropped: runc 1.1 refuses any


def test_load_notify_keeps_listener(tmp_path: Path) -> None:
    data = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/agent.sock",
        "listenerMetadata": "meta",
        "syscalls": [{"names": ["mknod"], "action": "SCMP_ACT_NOTIFY"}],
    }
    p = load_localhost(write(tmp_path, data))
    assert p["listenerPath"] == "/run/agent.sock" and p["listenerMetadata"] == "meta"


def test_load_empty_syscalls(tmp_path: Path) -> None:
    p = load_localhost(write(tmp_path, {"defaultAction": "SCMP_ACT_LOG"}))
    assert p == {"defaultAction": "SCMP_ACT_LOG", "architectures": [], "syscalls": []}


def test_convert_profile_direct() -> None:
    p = convert_profile({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}, source="inline")
    assert p["defaultAction"] == "SCMP_ACT_ALLOW"


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.json")
    with pytest.raises(InvalidArgument, match=r"nope\.json") as e:
        load_localhost(path)
    assert "no such file" in e.value.message


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(str(tmp_path))):
        load_localhost(str(tmp_path))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable(tmp_path: Path) -> None:
    path = write(tmp_path, DOCKER_PROFILE)
    os.chmod(path, 0)
    with pytest.raises(InvalidArgument, match="cannot read"):
        load_localhost(path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bin.json"
    path.write_bytes(b"\xff\xfe{")
    with pytest.raises(InvalidArgument, match=r"bin\.json"):
        load_localhost(str(path))


@pytest.mark.parametrize("text", ["", "{", "not json", '{"defaultAction": "SCMP_ACT_ALLOW",}'])
def test_invalid_json(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InvalidArgument, match="invalid JSON") as e:
        load_localhost(path)
    assert path in e.value.message


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ([], "must be a JSON object"),
        ({}, "defaultAction"),
        ({"defaultAction": "SCMP_ACT_MAYBE"}, "defaultAction"),
        ({"defaultAction": 1}, "defaultAction"),
        ({"defaultAction": "SCMP_ACT_NOTIFY"}, "defaultAction"),
        ({"defaultAction": "SCMP_ACT_LOG", "defaultErrnoRet": 1}, "defaultErrnoRet"),
        ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": -1}, "defaultErrnoRet"),
        ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": "1"}, "defaultErrnoRet"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "defaultActon": "x"}, "defaultActon"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": "SCMP_ARCH_X86_64"},
         "architectures"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["x86_64"]}, "architectures[0]"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
          "archMap": []}, "archMap"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "archMap": [{"architecture": "amd64"}]},
         "archMap[0].architecture"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_X"]}, "flags[0]"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": {}}, "syscalls"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": ["read"]}, "syscalls[0]"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ERRNO"}]},
         "syscalls[0].names"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": "read",
          "action": "SCMP_ACT_ERRNO"}]}, "syscalls[0].names"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [""],
          "action": "SCMP_ACT_ERRNO"}]}, "syscalls[0].names[0]"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"]}]},
         "syscalls[0].action"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
          "action": "SCMP_ACT_KILL", "errnoRet": 1}]}, "syscalls[0].errnoRet"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
          "action": "SCMP_ACT_NOTIFY"}]}, "syscalls[0].action"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
          "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1,
          "op": "SCMP_CMP_EQ"}]}]}, "syscalls[0].args[0].index"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
          "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1,
          "op": "EQ"}]}]}, "syscalls[0].args[0].op"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
          "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": -1,
          "op": "SCMP_CMP_EQ"}]}]}, "syscalls[0].args[0].value"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
          "action": "SCMP_ACT_ERRNO", "includes": {"minKernel": "four"}}]},
         "syscalls[0].includes.minKernel"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
          "action": "SCMP_ACT_ERRNO", "includes": {"caps": "CAP_SYS_ADMIN"}}]},
         "syscalls[0].includes.caps"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
          "action": "SCMP_ACT_ERRNO", "excludes": {"kernel": "1"}}]},
         "syscalls[0].excludes.kernel"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
          "action": "SCMP_ACT_ERRNO", "extra": 1}]}, "syscalls[0].extra"),
    ],
)  # fmt: skip
def test_bad_shape(tmp_path: Path, data: Any, field: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(InvalidArgument) as e:
        load_localhost(path)
    assert path in e.value.message
    assert field in e.value.message
