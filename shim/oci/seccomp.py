"""Seccomp for containers: the RuntimeDefault profile and Localhost profile files.

Both produce the OCI ``linux.seccomp`` object (runtime-spec 1.0.2 field names, plus
``defaultErrnoRet``, which runc 1.1 and crun 1.8 understand)::

    {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
     "architectures": ["SCMP_ARCH_X86_64", ...],
     "syscalls": [{"names": [...], "action": "SCMP_ACT_ALLOW",
                   "args": [{"index": 0, "value": 0, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]}]}

RuntimeDefault (``default_profile``) is an allow-list equivalent to the Docker / containerd
default: everything not listed fails with EPERM. Some rules depend on the container's
capabilities (a container granted CAP_SYS_ADMIN may call mount, unshare, ...), the node's
architecture, or an argument (clone without namespace flags, personality with known
personas only). Those conditions are evaluated here, so the object handed to the runtime
holds plain rules only.

Localhost (``load_localhost``) reads a profile file in the Docker / Kubernetes format
(``archMap``, ``includes``/``excludes``, ``name`` or ``names``, ``comment``) or one already in
OCI shape, validates it, and evaluates its conditions the same way.

What runc 1.1.5 and crun 1.8.1 both accept, and so all this module emits:
* actions SCMP_ACT_KILL, _KILL_PROCESS, _KILL_THREAD, _TRAP, _ERRNO, _TRACE, _ALLOW, _LOG,
  _NOTIFY (the last one needs ``listenerPath`` and cannot be the default action);
  ``errnoRet`` only with SCMP_ACT_ERRNO / SCMP_ACT_TRACE;
* ops SCMP_CMP_NE, _LT, _LE, _EQ, _GE, _GT, _MASKED_EQ (for MASKED_EQ ``value`` is the mask
  and ``valueTwo`` the value the masked argument must equal);
* no ``flags``: runc 1.1 refuses every flag, so Localhost profiles' flags (TSYNC, LOG,
  SPEC_ALLOW) are validated and dropped;
* ``defaultErrnoRet`` only with an ERRNO/TRACE default (crun refuses it with SCMP_ACT_LOG);
* no rule whose action equals the default action (a no-op libseccomp rejects): dropped.
Syscall names the node's libseccomp does not know are skipped by both runtimes (runc logs
them at debug level), so the list may name syscalls newer than the node's kernel.
"""

from __future__ import annotations

import json
import os
import platform
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shim.errors import InvalidArgument

ALLOW = "SCMP_ACT_ALLOW"
ERRNO = "SCMP_ACT_ERRNO"
EPERM = 1
ENOSYS = 38

ACTIONS = frozenset(
    {
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_LOG",
        "SCMP_ACT_NOTIFY",
    }
)
_ERRNO_ACTIONS = frozenset({"SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"})  # take errnoRet
OPS = frozenset(
    {
        "SCMP_CMP_NE",
        "SCMP_CMP_LT",
        "SCMP_CMP_LE",
        "SCMP_CMP_EQ",
        "SCMP_CMP_GE",
        "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ",
    }
)
FLAGS = frozenset(
    {"SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"}
)
ARCHITECTURES = frozenset(
    {
        "SCMP_ARCH_X86",
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_X32",
        "SCMP_ARCH_ARM",
        "SCMP_ARCH_AARCH64",
        "SCMP_ARCH_MIPS",
        "SCMP_ARCH_MIPS64",
        "SCMP_ARCH_MIPS64N32",
        "SCMP_ARCH_MIPSEL",
        "SCMP_ARCH_MIPSEL64",
        "SCMP_ARCH_MIPSEL64N32",
        "SCMP_ARCH_PPC",
        "SCMP_ARCH_PPC64",
        "SCMP_ARCH_PPC64LE",
        "SCMP_ARCH_S390",
        "SCMP_ARCH_S390X",
        "SCMP_ARCH_PARISC",
        "SCMP_ARCH_PARISC64",
        "SCMP_ARCH_RISCV64",
    }
)


# ------------------------------------------------------------------------------ node arch


@dataclass(frozen=True)
class _Arch:
    """One node architecture: the names profiles use for it, and its seccomp arches (native
    first: the ABIs a process on this node can make syscalls through)."""

    aliases: frozenset[str]  # uname -m and Go names, as in Docker's includes.arches
    seccomp: tuple[str, ...]


_ARCHES: tuple[_Arch, ...] = (
    _Arch(frozenset({"amd64", "x86_64"}), ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32")),
    _Arch(frozenset({"arm64", "aarch64"}), ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM")),
    _Arch(frozenset({"386", "x86", "i386", "i686"}), ("SCMP_ARCH_X86",)),
    _Arch(frozenset({"arm", "armv7l", "armv6l"}), ("SCMP_ARCH_ARM",)),
    _Arch(frozenset({"ppc64le"}), ("SCMP_ARCH_PPC64LE",)),
    _Arch(frozenset({"s390x"}), ("SCMP_ARCH_S390X", "SCMP_ARCH_S390")),
    _Arch(frozenset({"riscv64"}), ("SCMP_ARCH_RISCV64",)),
)


def _node_arch(arch: str) -> _Arch:
    """The node's architecture; ``arch`` "" means this machine. An unknown one gets no
    seccomp arches (the runtime then filters the native ABI only)."""
    name = (arch or platform.machine()).lower()
    for a in _ARCHES:
        if name in a.aliases:
            return a
    return _Arch(frozenset({name}), ())


# ------------------------------------------------------------------------------ rules


@dataclass(frozen=True)
class _Rule:
    """One syscall rule and the conditions under which it is part of the profile.

    ``caps``: every one must be held; ``not_caps``: skipped when any is held; ``arches``: only
    on these node arches; ``not_arches``: never on these; ``min_kernel``: (major, minor)."""

    names: tuple[str, ...]
    action: str = ALLOW
    errno_ret: int | None = None
    args: tuple[Mapping[str, Any], ...] = ()
    caps: frozenset[str] = frozenset()
    not_caps: frozenset[str] = frozenset()
    arches: frozenset[str] = frozenset()
    not_arches: frozenset[str] = frozenset()
    min_kernel: tuple[int, int] | None = None


def _allow(*names: str, **conditions: Any) -> _Rule:
    return _Rule(names=names, **conditions)


def _arg(index: int, value: int, op: str, value_two: int = 0) -> dict[str, Any]:
    return {"index": index, "value": value, "valueTwo": value_two, "op": op}


def _caps(*names: str) -> frozenset[str]:
    return frozenset(names)


# clone(2) flags that create namespaces (CLONE_NEWNS, _NEWCGROUP, _NEWUTS, _NEWIPC, _NEWUSER,
# _NEWPID, _NEWNET): without CAP_SYS_ADMIN, clone is allowed only with none of them set.
CLONE_NS_FLAGS = (
    0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
)
AF_VSOCK = 40

# personality(2) values a container may set: PER_LINUX, PER_LINUX32, UNAME26,
# UNAME26|PER_LINUX32, and 0xffffffff (query the current persona without changing it).
_PERSONAS = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

_SYS_ADMIN = _caps("CAP_SYS_ADMIN")

_DEFAULT_RULES: tuple[_Rule, ...] = (
    # --- Plain process life: files, memory, signals, time, sockets, IPC, scheduling. None of
    # these gives more than the container's own uid/caps already allow.
    _allow(
        # files and directories
        "access", "chdir", "chmod", "chown", "chown32", "close", "close_range",
        "copy_file_range", "creat", "dup", "dup2", "dup3", "faccessat", "faccessat2",
        "fadvise64", "fadvise64_64", "fallocate", "fchdir", "fchmod", "fchmodat", "fchmodat2",
        "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "flock", "fstat",
        "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64",
        "futimesat", "getcwd", "getdents", "getdents64", "lchown", "lchown32", "link", "linkat",
        "_llseek", "lseek", "lstat", "lstat64", "mkdir", "mkdirat", "mknod", "mknodat",
        "name_to_handle_at", "newfstatat", "open", "openat", "openat2", "pread64", "preadv",
        "preadv2", "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink",
        "readlinkat", "readv", "rename", "renameat", "renameat2", "rmdir", "sendfile",
        "sendfile64", "splice", "stat", "stat64", "statfs", "statfs64", "statx", "symlink",
        "symlinkat", "sync", "sync_file_range", "syncfs", "tee", "truncate", "truncate64",
        "umask", "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64", "utimes",
        "write", "writev", "cachestat", "pipe", "pipe2",
        # extended attributes
        "fgetxattr", "flistxattr", "fremovexattr", "fsetxattr", "getxattr", "lgetxattr",
        "listxattr", "llistxattr", "lremovexattr", "lsetxattr", "removexattr", "setxattr",
        # file events and polling
        "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
        "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2",
        "fanotify_mark", "inotify_add_watch", "inotify_init", "inotify_init1",
        "inotify_rm_watch", "_newselect", "pause", "poll", "ppoll", "ppoll_time64",
        "pselect6", "pselect6_time64", "select", "signalfd", "signalfd4",
        # asynchronous I/O (io_uring is NOT here: containerd 2.0 and Docker 25 dropped it,
        # its submissions bypass seccomp and it has a long record of kernel exploits)
        "io_cancel", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64",
        "io_setup", "io_submit", "ioprio_get", "ioprio_set",
        # memory
        "brk", "madvise", "membarrier", "memfd_create", "memfd_secret", "mincore", "mlock",
        "mlock2", "mlockall", "mmap", "mmap2", "mprotect", "mremap", "msync", "munlock",
        "munlockall", "munmap", "pkey_alloc", "pkey_free", "pkey_mprotect",
        "remap_file_pages", "map_shadow_stack",
        # processes and threads (clone/clone3 are conditional, below)
        "execve", "execveat", "exit", "exit_group", "fork", "vfork", "wait4", "waitid",
        "waitpid", "get_robust_list", "set_robust_list", "get_thread_area",
        "set_thread_area", "set_tid_address", "gettid", "rseq", "restart_syscall",
        "prctl", "seccomp", "landlock_add_rule", "landlock_create_ruleset",
        "landlock_restrict_self", "pidfd_open", "pidfd_send_signal", "process_mrelease",
        "getcpu", "sysinfo", "uname",
        # futexes
        "futex", "futex_time64", "futex_waitv", "futex_wake", "futex_wait", "futex_requeue",
        # credentials (the kernel checks CAP_SETUID/CAP_SETGID; capset only lowers)
        "capget", "capset", "getegid", "getegid32", "geteuid", "geteuid32", "getgid",
        "getgid32", "getgroups", "getgroups32", "getresgid", "getresgid32", "getresuid",
        "getresuid32", "getuid", "getuid32", "setfsgid", "setfsgid32", "setfsuid",
        "setfsuid32", "setgid", "setgid32", "setgroups", "setgroups32", "setregid",
        "setregid32", "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid",
        "setreuid32", "setuid", "setuid32",
        # process groups, sessions, limits, usage
        "getpgid", "getpgrp", "getpid", "getppid", "getsid", "setpgid", "setsid",
        "getpriority", "setpriority", "getrlimit", "setrlimit", "ugetrlimit", "prlimit64",
        "getrusage", "times",
        # signals
        "alarm", "kill", "tkill", "tgkill", "rt_sigaction", "rt_sigpending",
        "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend",
        "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sigaltstack",
        "sigprocmask", "sigreturn",
        # clocks and timers (setting the clock is in the CAP_SYS_TIME group; adjtimex and
        # clock_adjtime only read without it)
        "adjtimex", "clock_adjtime", "clock_adjtime64", "clock_getres", "clock_getres_time64",
        "clock_gettime", "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64",
        "getitimer", "setitimer", "gettimeofday", "nanosleep", "time", "timer_create",
        "timer_delete", "timer_getoverrun", "timer_gettime", "timer_gettime64",
        "timer_settime", "timer_settime64", "timerfd_create", "timerfd_gettime",
        "timerfd_gettime64", "timerfd_settime", "timerfd_settime64",
        # scheduling (the kernel checks CAP_SYS_NICE for raising priority)
        "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_get_priority_max",
        "sched_get_priority_min", "sched_getscheduler", "sched_rr_get_interval",
        "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr",
        "sched_setparam", "sched_setscheduler", "sched_yield",
        # sockets (socket itself is filtered, below)
        "accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt",
        "listen", "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "send",
        "sendmmsg", "sendmsg", "sendto", "setsockopt", "shutdown", "socketcall",
        "socketpair",
        # System V and POSIX IPC (namespaced by the IPC namespace)
        "ipc", "msgctl", "msgget", "msgrcv", "msgsnd", "semctl", "semget", "semop",
        "semtimedop", "semtimedop_time64", "shmat", "shmctl", "shmdt", "shmget",
        "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64",
        "mq_timedsend", "mq_timedsend_time64", "mq_unlink",
        # misc: ioctl (device access is the devices cgroup's job), random, vmsplice
        "ioctl", "getrandom", "vmsplice",
    ),
    # --- ptrace and reading/writing another process's memory: the kernel (>= 4.8) checks
    # ptrace access (same uid, no CAP_SYS_PTRACE needed within the container), so Docker
    # allows them on new kernels; Kubernetes needs kernels far newer than 4.8.
    _allow("ptrace", "process_vm_readv", "process_vm_writev"),
    # --- socket: any family except AF_VSOCK (not namespaced: it reaches the hypervisor).
    _Rule(names=("socket",), args=(_arg(0, AF_VSOCK, "SCMP_CMP_NE"),)),
    # --- personality: only the harmless personas (no ADDR_NO_RANDOMIZE & co.).
    *(_Rule(names=("personality",), args=(_arg(0, p, "SCMP_CMP_EQ"),)) for p in _PERSONAS),
    # --- per-architecture calls glibc and language runtimes need.
    _allow("arch_prctl", arches=frozenset({"amd64", "x32"})),
    _allow("modify_ldt", arches=frozenset({"amd64", "x32", "x86"})),
    _allow(
        "arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint",
        "cacheflush", "set_tls",
        arches=frozenset({"arm", "arm64"}),
    ),
    _allow("sync_file_range2", "swapcontext", arches=frozenset({"ppc64le"})),
    _allow(
        "s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr",
        arches=frozenset({"s390", "s390x"}),
    ),
    _allow("riscv_flush_icache", arches=frozenset({"riscv64"})),
    # --- clone without CAP_SYS_ADMIN: only when no namespace flag is set (flags are
    # argument 0, argument 1 on s390). clone3 passes its flags in memory seccomp cannot
    # read, so it fails with ENOSYS and glibc falls back to clone.
    _Rule(
        names=("clone",),
        args=(_arg(0, CLONE_NS_FLAGS, "SCMP_CMP_MASKED_EQ"),),
        not_caps=_SYS_ADMIN,
        not_arches=frozenset({"s390", "s390x"}),
    ),
    _Rule(
        names=("clone",),
        args=(_arg(1, CLONE_NS_FLAGS, "SCMP_CMP_MASKED_EQ"),),
        not_caps=_SYS_ADMIN,
        arches=frozenset({"s390", "s390x"}),
    ),
    _Rule(names=("clone3",), action=ERRNO, errno_ret=ENOSYS, not_caps=_SYS_ADMIN),
    # --- CAP_SYS_ADMIN: namespaces, mounts, host/domain name, quotas, bpf/perf (before
    # CAP_BPF/CAP_PERFMON existed), kernel log, fanotify.
    _allow(
        "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
        "lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree",
        "perf_event_open", "quotactl", "quotactl_fd", "setdomainname", "sethostname",
        "setns", "syslog", "umount", "umount2", "unshare",
        caps=_SYS_ADMIN,
    ),
    # --- one group per capability that guards a family of calls.
    _allow("open_by_handle_at", caps=_caps("CAP_DAC_READ_SEARCH")),  # can escape bind mounts
    _allow("reboot", caps=_caps("CAP_SYS_BOOT")),
    _allow("chroot", caps=_caps("CAP_SYS_CHROOT")),
    _allow("delete_module", "init_module", "finit_module", caps=_caps("CAP_SYS_MODULE")),
    _allow("acct", caps=_caps("CAP_SYS_PACCT")),
    _allow(
        "kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev",
        "ptrace",
        caps=_caps("CAP_SYS_PTRACE"),
    ),
    _allow("iopl", "ioperm", caps=_caps("CAP_SYS_RAWIO")),
    _allow(
        "settimeofday", "stime", "clock_settime", "clock_settime64", caps=_caps("CAP_SYS_TIME")
    ),
    _allow("vhangup", caps=_caps("CAP_SYS_TTY_CONFIG")),
    _allow(  # NUMA memory policy
        "get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node",
        caps=_caps("CAP_SYS_NICE"),
    ),
    _allow("syslog", caps=_caps("CAP_SYSLOG")),
    _allow("bpf", caps=_caps("CAP_BPF")),
    _allow("perf_event_open", caps=_caps("CAP_PERFMON")),
)
# Never allowed by RuntimeDefault, whatever the capabilities (documentation; tests check):
# keyctl, add_key, request_key (the keyring is not namespaced), kexec_load, kexec_file_load,
# swapon, swapoff, userfaultfd (a classic exploit primitive), io_uring_*, pivot_root,
# nfsservctl, uselib, ustat, sysfs, _sysctl, vm86, vm86old, create_module, get_kernel_syms,
# query_module; and without their capability: mount/umount2/unshare/setns, bpf,
# perf_event_open, init_module, reboot, chroot, ...


# ------------------------------------------------------------------------------ evaluation


@dataclass(frozen=True)
class _Context:
    caps: frozenset[str]
    arch: _Arch
    kernel: tuple[int, int]


def _norm_cap(cap: str) -> str:
    cap = cap.strip().upper()
    return cap if cap.startswith("CAP_") else "CAP_" + cap


def _kernel_version(release: str) -> tuple[int, int]:
    parts = release.split("-", 1)[0].split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return (0, 0)


def _context(capabilities: Iterable[str], arch: str, kernel: str = "") -> _Context:
    return _Context(
        caps=frozenset(_norm_cap(c) for c in capabilities),
        arch=_node_arch(arch),
        kernel=_kernel_version(kernel or os.uname().release),
    )


def _applies(rule: _Rule, ctx: _Context) -> bool:
    if rule.caps and not rule.caps <= ctx.caps:
        return False
    if rule.not_caps & ctx.caps:
        return False
    if rule.arches and not rule.arches & ctx.arch.aliases:
        return False
    if rule.not_arches & ctx.arch.aliases:
        return False
    return not (rule.min_kernel is not None and ctx.kernel < rule.min_kernel)


def _effective_errno(action: str, errno_ret: int | None) -> int | None:
    """The errno an ERRNO/TRACE action returns (runc and crun use EPERM when none is set)."""
    if action not in _ERRNO_ACTIONS:
        return None
    return EPERM if errno_ret is None else errno_ret


def _emit(
    rules: Iterable[_Rule], ctx: _Context, default_action: str, default_errno: int | None
) -> list[dict[str, Any]]:
    """The OCI syscall rules that apply in ``ctx``: each (name, action, errno, args) once, and
    no rule that only repeats the default action."""
    seen: set[tuple[str, str, int | None, str]] = set()
    out: list[dict[str, Any]] = []
    for rule in rules:
        if not _applies(rule, ctx):
            continue
        errno = _effective_errno(rule.action, rule.errno_ret)
        if (rule.action, errno) == (default_action, default_errno):
            continue  # same as the default: a no-op (and libseccomp refuses it)
        args_key = json.dumps(rule.args, sort_keys=True)
        names: list[str] = []
        for name in rule.names:
            key = (name, rule.action, errno, args_key)
            if key not in seen:
                seen.add(key)
                names.append(name)
        if not names:
            continue
        entry: dict[str, Any] = {"names": names, "action": rule.action}
        if rule.errno_ret is not None:
            entry["errnoRet"] = rule.errno_ret
        if rule.args:
            entry["args"] = [dict(a) for a in rule.args]
        out.append(entry)
    return out


# ------------------------------------------------------------------------------ RuntimeDefault


def default_profile(capabilities: frozenset[str] = frozenset(), arch: str = "") -> dict[str, Any]:
    """The RuntimeDefault OCI ``linux.seccomp`` object for a container holding
    ``capabilities`` (effective set, "CAP_SYS_ADMIN" style; "SYS_ADMIN" is accepted too) on
    a node of architecture ``arch`` (uname -m or Go name; "" = this machine)."""
    ctx = _context(capabilities, arch)
    return {
        "defaultAction": ERRNO,
        "defaultErrnoRet": EPERM,
        "architectures": list(ctx.arch.seccomp),
        "syscalls": _emit(_DEFAULT_RULES, ctx, ERRNO, EPERM),
    }


# ------------------------------------------------------------------------------ Localhost


MAX_PROFILE = 1 << 20  # bytes: real profiles are tens of KiB


def read_profile(path: str, limit: int = MAX_PROFILE) -> str:
    """The profile's text. Opened non-blocking (a FIFO or device never stalls the caller),
    refused unless a regular file, read at most ``limit`` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise InvalidArgument(f"seccomp profile {path}: no such file") from None
    except OSError as e:
        raise InvalidArgument(f"seccomp profile {path}: cannot open: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise InvalidArgument(f"seccomp profile {path}: is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise InvalidArgument(f"seccomp profile {path}: not a regular file")
        if st.st_size > limit:
            raise InvalidArgument(f"seccomp profile {path}: {st.st_size} bytes, over the "
                                  f"{limit}-byte limit")
        data = os.read(fd, limit + 1)
    except OSError as e:
        raise InvalidArgument(f"seccomp profile {path}: cannot read: {e.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise InvalidArgument(f"seccomp profile {path}: over the {limit}-byte limit")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidArgument(f"seccomp profile {path}: not UTF-8: {e}") from None


def load_localhost(
    path: str,
    capabilities: Iterable[str] = frozenset(),
    arch: str = "",
    kernel: str = "",
) -> dict[str, Any]:
    """Read a Localhost profile and return the OCI ``linux.seccomp`` object.

    Accepts the Docker / Kubernetes format (``archMap`` or ``architectures``, ``syscalls``
    with ``name``/``names``, ``action``, ``errnoRet``, ``args``, ``includes``/``excludes`` by
    ``caps``, ``arches``, ``minKernel``; ``comment`` ignored) and an OCI-shaped object.
    ``capabilities``, ``arch`` and ``kernel`` (a uname -r string, "" = this machine) decide
    the conditional rules: a rule that ``includes`` caps not given is left out.

    Any problem (missing or unreadable file, invalid JSON, unknown action/op/arch/flag, bad
    field type) raises InvalidArgument naming the path and the field.
    """
    text = read_profile(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidArgument(f"seccomp profile {path}: invalid JSON: {e}") from None
    return convert_profile(data, capabilities, arch, kernel, source=path)


def convert_profile(
    data: Any,
    capabilities: Iterable[str] = frozenset(),
    arch: str = "",
    kernel: str = "",
    *,
    source: str = "<profile>",
) -> dict[str, Any]:
    """``load_localhost`` on an already parsed profile (``source`` names it in errors)."""
    p = _Parser(source)
    ctx = _context(capabilities, arch, kernel)
    if not isinstance(data, dict):
        raise p.error("", "must be a JSON object")
    unknown = set(data) - _TOP_FIELDS
    if unknown:
        raise p.error(sorted(unknown)[0], "unknown field")

    default_action = p.action(data.get("defaultAction"), "defaultAction")
    if default_action == "SCMP_ACT_NOTIFY":
        raise p.error("defaultAction", "SCMP_ACT_NOTIFY cannot be the default action")
    default_errno = p.opt_uint(data.get("defaultErrnoRet"), "defaultErrnoRet")
    if default_errno is not None and default_action not in _ERRNO_ACTIONS:
        raise p.error("defaultErrnoRet", f"not allowed with {default_action}")

    out: dict[str, Any] = {"defaultAction": default_action}
    if default_errno is not None:
        out["defaultErrnoRet"] = default_errno
    out["architectures"] = p.architectures(data, ctx.arch)
    # Flags are checked but not passed on: runc 1.1 refuses any ("seccomp flags are not yet
    # supported by runc"). Dropping them is safe: TSYNC is what the runtimes do anyway, LOG
    # only adds audit records, SPEC_ALLOW would turn a speculation mitigation off.
    for i, flag in enumerate(p.str_list(data.get("flags"), "flags")):
        if flag not in FLAGS:
            raise p.error(f"flags[{i}]", f"unknown flag {flag!r}")
    listener = data.get("listenerPath")
    if listener is not None and not isinstance(listener, str):
        raise p.error("listenerPath", "must be a string")
    if listener:
        out["listenerPath"] = listener
    metadata = data.get("listenerMetadata")
    if metadata is not None and not isinstance(metadata, str):
        raise p.error("listenerMetadata", "must be a string")
    if metadata:
        out["listenerMetadata"] = metadata

    rules = p.rules(data.get("syscalls"))
    if not listener:
        for i, r in enumerate(rules):
            if r.action == "SCMP_ACT_NOTIFY":
                raise p.error(f"syscalls[{i}].action", "SCMP_ACT_NOTIFY needs listenerPath")
    out["syscalls"] = _emit(
        rules, ctx, default_action, _effective_errno(default_action, default_errno)
    )
    return out


_TOP_FIELDS = frozenset(
    {
        "defaultAction",
        "defaultErrnoRet",
        "architectures",
        "archMap",
        "flags",
        "listenerPath",
        "listenerMetadata",
        "syscalls",
        "comment",
    }
)
_RULE_FIELDS = frozenset(
    {"name", "names", "action", "errnoRet", "args", "includes", "excludes", "comment"}
)
_ARG_FIELDS = frozenset({"index", "value", "valueTwo", "op"})
_FILTER_FIELDS = frozenset({"caps", "arches", "minKernel"})


class _Parser:
    """Validation helpers; every error names the file and the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, field: str, message: str) -> InvalidArgument:
        where = f"seccomp profile {self.source}"
        return InvalidArgument(f"{where}: {field}: {message}" if field else f"{where}: {message}")

    def action(self, value: Any, field: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.error(field, "missing or not a string")
        if value not in ACTIONS:
            raise self.error(field, f"unknown action {value!r}")
        return value

    def opt_uint(self, value: Any, field: str, *, bits: int = 32) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(field, "must be a non-negative integer")
        if value < 0 or value >= 1 << bits:
            raise self.error(field, f"out of range: {value}")
        return value

    def str_list(self, value: Any, field: str) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(field, "must be a list of strings")
        for i, v in enumerate(value):
            if not isinstance(v, str) or not v:
                raise self.error(f"{field}[{i}]", "must be a non-empty string")
        return list(value)

    def obj(self, value: Any, field: str, allowed: frozenset[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(field, "must be an object")
        unknown = set(value) - allowed
        if unknown:
            raise self.error(f"{field}.{sorted(unknown)[0]}", "unknown field")
        return value

    def architectures(self, data: dict[str, Any], node: _Arch) -> list[str]:
        arches = self.str_list(data.get("architectures"), "architectures")
        for i, a in enumerate(arches):
            if a not in ARCHITECTURES:
                raise self.error(f"architectures[{i}]", f"unknown architecture {a!r}")
        arch_map = data.get("archMap")
        if arch_map is None:
            return arches
        if arches:
            raise self.error("archMap", "use either architectures or archMap, not both")
        if not isinstance(arch_map, list):
            raise self.error("archMap", "must be a list")
        native = node.seccomp[0] if node.seccomp else ""
        result: list[str] = []
        for i, entry in enumerate(arch_map):
            field = f"archMap[{i}]"
            entry = self.obj(entry, field, frozenset({"architecture", "subArchitectures"}))
            main = entry.get("architecture")
            if not isinstance(main, str) or main not in ARCHITECTURES:
                raise self.error(f"{field}.architecture", f"unknown architecture {main!r}")
            subs = self.str_list(entry.get("subArchitectures"), f"{field}.subArchitectures")
            for j, s in enumerate(subs):
                if s not in ARCHITECTURES:
                    raise self.error(
                        f"{field}.subArchitectures[{j}]", f"unknown architecture {s!r}"
                    )
            if main == native and not result:
                result = [main, *(s for s in subs if s != main)]
        return result

    def rules(self, value: Any) -> list[_Rule]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error("syscalls", "must be a list")
        return [self.rule(r, f"syscalls[{i}]") for i, r in enumerate(value)]

    def rule(self, value: Any, field: str) -> _Rule:
        if not isinstance(value, dict):
            raise self.error(field, "must be an object")
        unknown = set(value) - _RULE_FIELDS
        if unknown:
            raise self.error(f"{field}.{sorted(unknown)[0]}", "unknown field")
        names = self.str_list(value.get("names"), f"{field}.names")
        single = value.get("name")
        if single is not None:
            if not isinstance(single, str) or not single:
                raise self.error(f"{field}.name", "must be a non-empty string")
            names = [single, *(n for n in names if n != single)]
        if not names:
            raise self.error(f"{field}.names", "no syscall names")
        action = self.action(value.get("action"), f"{field}.action")
        errno = self.opt_uint(value.get("errnoRet"), f"{field}.errnoRet")
        if errno is not None and action not in _ERRNO_ACTIONS:
            raise self.error(f"{field}.errnoRet", f"not allowed with {action}")
        args = self.args(value.get("args"), f"{field}.args")
        inc = self.obj(value.get("includes"), f"{field}.includes", _FILTER_FIELDS)
        exc = self.obj(value.get("excludes"), f"{field}.excludes", _FILTER_FIELDS)
        if exc.get("minKernel"):
            raise self.error(f"{field}.excludes.minKernel", "only allowed in includes")
        return _Rule(
            names=tuple(dict.fromkeys(names)),
            action=action,
            errno_ret=errno,
            args=tuple(args),
            caps=frozenset(
                _norm_cap(c) for c in self.str_list(inc.get("caps"), f"{field}.includes.caps")
            ),
            not_caps=frozenset(
                _norm_cap(c) for c in self.str_list(exc.get("caps"), f"{field}.excludes.caps")
            ),
            arches=frozenset(self.str_list(inc.get("arches"), f"{field}.includes.arches")),
            not_arches=frozenset(self.str_list(exc.get("arches"), f"{field}.excludes.arches")),
            min_kernel=self.min_kernel(inc.get("minKernel"), f"{field}.includes.minKernel"),
        )

    def args(self, value: Any, field: str) -> list[dict[str, Any]]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(field, "must be a list")
        out: list[dict[str, Any]] = []
        for i, a in enumerate(value):
            f = f"{field}[{i}]"
            a = self.obj(a, f, _ARG_FIELDS)
            if not a:
                raise self.error(f, "must be a non-empty object")
            index = self.opt_uint(a.get("index"), f"{f}.index")
            if index is None or index > 5:
                raise self.error(f"{f}.index", "must be 0..5")
            op = a.get("op")
            if op not in OPS:
                raise self.error(f"{f}.op", f"unknown op {op!r}")
            v = self.opt_uint(a.get("value"), f"{f}.value", bits=64) or 0
            v2 = self.opt_uint(a.get("valueTwo"), f"{f}.valueTwo", bits=64) or 0
            out.append(_arg(index, v, op, v2))
        return out

    def min_kernel(self, value: Any, field: str) -> tuple[int, int] | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise self.error(field, "must be a string like '4.8'")
        parts = value.split(".")
        if len(parts) != 2 or not all(x.isdigit() for x in parts):
            raise self.error(field, f"must be 'major.minor', not {value!r}")
        return int(parts[0]), int(parts[1])


def syscall_names(profile: Mapping[str, Any], action: str = ALLOW) -> set[str]:
    """Names with an unconditional (argument-free) rule of ``action`` in an OCI profile."""
    names: set[str] = set()
    for rule in profile.get("syscalls", []):
        if rule.get("action") == action and not rule.get("args"):
            names.update(rule.get("names", []))
    return names

