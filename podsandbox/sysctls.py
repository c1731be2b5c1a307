"""Pod sysctls: which keys are namespaced and where, checked before anything is created."""

from __future__ import annotations

import errno
import os
import re

from cni.errdefs import InvalidArgument
from podsandbox.types import Mode, NamespaceModes

# Namespaced sysctls the kubelet may pass, and the namespace each lives in.
_IPC_EXACT = {"kernel.sem"}
_IPC_PREFIXES = ("kernel.shm", "kernel.msg", "fs.mqueue.")
_NET_PREFIX = "net."
# The kubelet's sysctl name pattern (segments of [a-z0-9_-], split by '.' or '/'): no empty
# segment, so no "//" that the '.'<->'/' swap would turn into "..".
_NAME = re.compile(r"^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$")
_MAX_NAME = 253


def _swap(key: str) -> str:
    return key.translate(str.maketrans("./", "/."))


def normalise(key: str) -> str:
    """To the dotted form. The kubelet accepts ``net.ipv4.ip_forward`` and
    ``net/ipv4/ip_forward``; in the dotted form a '/' stands for a dot in a name (eth0.100)."""
    if "/" in key and not key.startswith(("net.", "kernel.", "fs.")):
        return _swap(key)
    return key


def namespace_of(key: str) -> str | None:
    if key in _IPC_EXACT or key.startswith(_IPC_PREFIXES):
        return "ipc"
    if key.startswith(_NET_PREFIX):
        return "net"
    return None


def validate(sysctls: dict[str, str], modes: NamespaceModes) -> tuple[tuple[str, str], ...]:
    """Pure checks: the key is namespaced and its namespace is the pod's own."""
    out = []
    for raw, value in sorted(sysctls.items()):
        if len(raw) > _MAX_NAME or not _NAME.fullmatch(raw):
            raise InvalidArgument(f"linux.sysctls[{raw[:80]!r}]: not a valid sysctl name")
        key = normalise(raw)
        kind = namespace_of(key)
        if kind is None:
            raise InvalidArgument(
                f"linux.sysctls[{raw!r}]: not a namespaced sysctl (allowed: net.*, kernel.shm*, "
                f"kernel.msg*, kernel.sem, fs.mqueue.*)"
            )
        mode = modes.mode_of(kind)
        if mode is Mode.NODE:
            host = "hostNetwork" if kind == "net" else "hostIPC"
            raise InvalidArgument(
                f"linux.sysctls[{raw!r}]: cannot be set for a pod that uses the node's "
                f"{kind} namespace ({host})"
            )
        if any(c in value for c in "\n\0"):
            raise InvalidArgument(f"linux.sysctls[{raw!r}]: bad value {value!r}")
        out.append((key, value))
    return tuple(out)


def proc_path(key: str) -> str:
    return "/proc/sys/" + _swap(key)


def _open_beneath(root: str, parts: list[str]) -> int:
    """Open root/parts... for writing, one component at a time, never following a link and
    never leaving root (no '', '.' or '..' component): containment by construction, not by
    the string checks alone."""
    if not parts or any(p in ("", ".", "..") for p in parts):
        raise FileNotFoundError(errno.ENOENT, "bad sysctl path")
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for p in parts[:-1]:
            nxt = os.open(p, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=fd)
            os.close(fd)
            fd = nxt
        return os.open(parts[-1], os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    finally:
        os.close(fd)


def apply(sysctls: tuple[tuple[str, str], ...]) -> None:
    """Write each sysctl under /proc/sys; run inside the pod's namespaces (see
    kernel.in_namespaces)."""
    for key, value in sysctls:
        try:
            fd = _open_beneath("/proc/sys", _swap(key).split("/"))
        except OSError:
            raise InvalidArgument(f"linux.sysctls[{key!r}]: unknown sysctl") from None
        try:
            with os.fdopen(fd, "w") as f:
                f.write(value)
        except OSError as e:
            if e.errno in (errno.EINVAL, errno.ERANGE):
                raise InvalidArgument(
                    f"linux.sysctls[{key!r}]: bad value {value!r} ({e.strerror})"
                ) from None
            raise InvalidArgument(f"linux.sysctls[{key!r}]: cannot set: {e.strerror}") from None
