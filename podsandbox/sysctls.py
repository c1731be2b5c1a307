"""Pod sysctls: which keys are namespaced and where, checked before anything is created."""

from __future__ import annotations

import errno
import os

from podsandbox.types import Mode, NamespaceModes
from shim.errors import InvalidArgument

# Namespaced sysctls the kubelet may pass, and the namespace each lives in.
_IPC_EXACT = {"kernel.sem"}
_IPC_PREFIXES = ("kernel.shm", "kernel.msg", "fs.mqueue.")
_NET_PREFIX = "net."


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


def apply(sysctls: tuple[tuple[str, str], ...]) -> None:
    """Write each sysctl; run inside the pod's namespaces (see kernel.in_namespaces)."""
    for key, value in sysctls:
        path = proc_path(key)
        if not os.path.exists(path):
            raise InvalidArgument(f"linux.sysctls[{key!r}]: unknown sysctl")
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as e:
            if e.errno in (errno.EINVAL, errno.ERANGE):
                raise InvalidArgument(
                    f"linux.sysctls[{key!r}]: bad value {value!r} ({e.strerror})"
                ) from None
            raise InvalidArgument(f"linux.sysctls[{key!r}]: cannot set: {e.strerror}") from None
