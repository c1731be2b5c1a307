"""The few syscalls the sandbox layer needs that Python 3.11 lacks: mount, umount2, setns,
and the new mount API's open_tree / mount_setattr / move_mount for idmapped mounts.

Namespace work (``in_namespaces``) runs in a fresh thread that ends afterwards: ``setns`` for
net/ipc/uts changes only the calling thread, and a thread that dies cannot leak its namespaces
into later work of a pool.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import socket
import struct
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
_libc.syscall.restype = ctypes.c_long

# x86-64 and arm64 share these numbers (the new mount API came after the tables were unified).
_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_MOUNT_SETATTR = 442
_OPEN_TREE_CLONE = 0x1
_OPEN_TREE_CLOEXEC = os.O_CLOEXEC
_AT_FDCWD = -100
_AT_EMPTY_PATH = 0x1000
_AT_RECURSIVE = 0x8000
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_MOUNT_ATTR_IDMAP = 0x100000


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]

MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MNT_DETACH = 0x2
MS_BIND = 0x1000

CLONE_FLAGS = {
    "net": 0x40000000,  # CLONE_NEWNET
    "ipc": 0x08000000,  # CLONE_NEWIPC
    "uts": 0x04000000,  # CLONE_NEWUTS
}


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str, target: str, fstype: str, flags: int = 0, data: str = "") -> None:
    _check(
        _libc.mount(source.encode(), target.encode(), fstype.encode(), flags,
                    data.encode() if data else None),
        f"mount {fstype} on {target}",
    )


def umount(target: str, detach: bool = True) -> bool:
    """Unmount; False when nothing was mounted there (or the path is gone)."""
    ret = _libc.umount2(target.encode(), MNT_DETACH if detach else 0)
    if ret != 0:
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOENT):
            return False
        raise OSError(err, f"umount {target}: {os.strerror(err)}")
    return True


def idmapped_clone(source: str, userns: str, *, recursive: bool = False) -> int:
    """A detached copy of the mount tree at ``source`` whose files' owners are shifted by the
    mappings of the user namespace pinned at ``userns`` (an idmapped mount): a file the disk
    says is owned by 0 is seen as the namespace's 0. Returns its fd (the caller closes it),
    never attached: ``mount_idmapped`` attaches one. OSError when the kernel or the file
    system cannot (EINVAL: no idmap support there)."""
    fd = int(_libc.syscall(_SYS_OPEN_TREE, _AT_FDCWD, os.fsencode(source),
                           _OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC
                           | (_AT_RECURSIVE if recursive else 0)))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"open_tree {source}: {os.strerror(err)}")
    try:
        ns = os.open(userns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            attr = _MountAttr(_MOUNT_ATTR_IDMAP, 0, 0, ns)
            ret = _libc.syscall(_SYS_MOUNT_SETATTR, fd, b"",
                                _AT_EMPTY_PATH | (_AT_RECURSIVE if recursive else 0),
                                ctypes.byref(attr), ctypes.sizeof(attr))
            _check(int(ret), f"idmap {source}")
        finally:
            os.close(ns)
    except BaseException:
        os.close(fd)
        raise
    return fd


def mount_idmapped(source: str, userns: str, target: str, *, recursive: bool = False) -> None:
    """An idmapped copy of the mount tree at ``source`` (``idmapped_clone``) attached at
    ``target``. OSError as ``idmapped_clone``, or when it cannot be attached."""
    fd = idmapped_clone(source, userns, recursive=recursive)
    try:
        _check(int(_libc.syscall(_SYS_MOVE_MOUNT, fd, b"", _AT_FDCWD, os.fsencode(target),
                                 _MOVE_MOUNT_F_EMPTY_PATH)), f"move_mount to {target}")
    finally:
        os.close(fd)


def is_nsfs(path: str) -> bool:
    """True once a namespace is bind-mounted on ``path`` (its device becomes nsfs's)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_dev != os.stat(os.path.dirname(path)).st_dev


def _setns(path: str, kind: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.setns(fd, CLONE_FLAGS[kind]), f"setns {kind} {path}")
    finally:
        os.close(fd)


def in_namespaces(paths: dict[str, str], fn: Callable[[], T]) -> T:
    """Run ``fn`` in a new thread that has joined the given net/ipc/uts namespaces."""
    result: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            for kind, path in paths.items():
                _setns(path, kind)
            result.append(fn())
        except BaseException as e:
            error.append(e)

    t = threading.Thread(target=run, name="netns-worker", daemon=True)
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0]


_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def link_up(ifname: str) -> None:
    """Set a link up in the calling thread's network namespace (one ioctl; no netlink
    library to load). For ``lo`` in a new pod namespace, inside ``in_namespaces``."""
    name = ifname.encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        got = fcntl.ioctl(s, _SIOCGIFFLAGS, struct.pack("16sH22x", name, 0))
        flags = struct.unpack("16sH22x", got)[1]
        if not flags & _IFF_UP:
            fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH22x", name, flags | _IFF_UP))


def _stat(pid: int) -> list[bytes] | None:
    """Fields of /proc/<pid>/stat after the command name (field 3 on); None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    return data[data.rindex(b")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks); None if the pid is gone."""
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def state(pid: int) -> str | None:
    fields = _stat(pid)
    return fields[0].decode() if fields else None


def alive(pid: int, start: int) -> bool:
    """The process with this identity exists and is not a zombie (one read of its stat)."""
    fields = _stat(pid)
    return fields is not None and int(fields[19]) == start and fields[0] not in (b"Z", b"X")


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []
