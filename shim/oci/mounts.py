"""The container's mounts (the standard ones, the pod's files, the CRI mounts) and its masked
and read-only paths. Pure: host paths are taken as given (the manager creates them)."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from typing import Any

from podsandbox.types import PodContext
from shim.errors import InvalidArgument
from shim.oci.types import Mount, Propagation, SecurityContext

# The kubelet's / containerd's defaults.
DEFAULT_MASKED_PATHS: tuple[str, ...] = (
    "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
DEFAULT_READONLY_PATHS: tuple[str, ...] = (
    "/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
)

_PROPAGATION = {
    Propagation.PRIVATE: "rprivate",
    Propagation.HOST_TO_CONTAINER: "rslave",
    Propagation.BIDIRECTIONAL: "rshared",
}


def _m(dest: str, typ: str, source: str, options: list[str]) -> dict[str, Any]:
    return {"destination": dest, "type": typ, "source": source, "options": options}


def standard_mounts(pod: PodContext, *, readonly_rootfs: bool, privileged: bool) -> list[dict]:
    """/proc, /dev, /dev/pts, /dev/mqueue, /dev/shm, /sys, /sys/fs/cgroup, the pod's
    /etc/hostname and /etc/resolv.conf (read-only with a read-only rootfs, as CRI-O does)."""
    sys_mode = "rw" if privileged else "ro"
    out = [
        _m("/proc", "proc", "proc", ["nosuid", "noexec", "nodev"]),
        _m("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        _m("/dev/pts", "devpts", "devpts",
           ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
        _m("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
    ]
    if pod.shm_path:
        out.append(_m("/dev/shm", "bind", pod.shm_path, ["rbind", "nosuid", "noexec", "nodev"]))
    else:
        out.append(_m("/dev/shm", "tmpfs", "shm",
                      ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]))
    out += [
        _m("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", sys_mode]),
        _m("/sys/fs/cgroup", "cgroup", "cgroup",
           ["nosuid", "noexec", "nodev", "relatime", sys_mode]),
    ]
    file_mode = "ro" if readonly_rootfs else "rw"
    if pod.hostname_path:
        out.append(_m("/etc/hostname", "bind", pod.hostname_path, ["bind", file_mode]))
    if pod.resolv_conf_path:
        out.append(_m("/etc/resolv.conf", "bind", pod.resolv_conf_path,
                      ["bind", "nodev", "nosuid", "noexec", file_mode]))
    return out


def cri_mounts(mounts: Sequence[Mount], rro_supported: bool = False
               ) -> tuple[list[dict[str, Any]], str]:
    """(OCI mounts of the CRI ones, rootfsPropagation: "rshared", "rslave" or "").
    Image volumes must have been resolved to host paths by the caller."""
    out: list[dict[str, Any]] = []
    shared = slave = False
    for i, m in enumerate(mounts):
        field = f"mounts[{i}]"
        if not m.container_path.startswith("/"):
            raise InvalidArgument(
                f"{field}.container_path {m.container_path!r}: must be an absolute path"
            )
        if not m.host_path:
            if m.image is not None:
                raise InvalidArgument(f"{field}.image.image: required for an image volume")
            raise InvalidArgument(f"{field}.host_path: empty")
        if m.uid_mappings or m.gid_mappings:  # the container manager resolves them first
            raise InvalidArgument(f"{field}: id-mapped mounts must be resolved to host paths")
        prop = _PROPAGATION[m.propagation]
        options = ["rbind", prop, "ro" if m.readonly else "rw"]
        if m.recursive_read_only:
            # as the kubelet and containerd require: read-only, and nothing propagates in
            if not m.readonly:
                raise InvalidArgument(f"{field}.recursive_read_only: needs readonly")
            if m.propagation is not Propagation.PRIVATE:
                raise InvalidArgument(
                    f"{field}.recursive_read_only: needs propagation PROPAGATION_PRIVATE")
            if not rro_supported:
                raise InvalidArgument(
                    f"{field}.recursive_read_only: this runtime handler cannot make recursive "
                    "read-only mounts (see Status.runtime_handlers)")
            options.append("rro")
        shared |= m.propagation is Propagation.BIDIRECTIONAL
        slave |= m.propagation is Propagation.HOST_TO_CONTAINER
        dest = posixpath.normpath(m.container_path)
        out.append(_m(dest, "bind", m.host_path, options))
    # Parents before children, so a mount never hides one made inside it (stable otherwise).
    out.sort(key=lambda x: x["destination"].rstrip("/").count("/"))
    return out, "rshared" if shared else ("rslave" if slave else "")


def merge(standard: list[dict[str, Any]], cri: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Standard mounts, minus those a CRI mount targets, then the CRI mounts."""
    taken = {m["destination"] for m in cri}
    return [m for m in standard if m["destination"] not in taken] + cri


def masked_and_readonly(
    sc: SecurityContext, *, privileged: bool, unmasked: bool
) -> tuple[list[str], list[str]]:
    """``linux.maskedPaths`` and ``linux.readonlyPaths``: none when privileged or with an
    Unmasked proc mount; the security context's lists when given; else the defaults."""
    if privileged or unmasked:
        return [], []
    masked = list(sc.masked_paths) or list(DEFAULT_MASKED_PATHS)
    readonly = list(sc.readonly_paths) or list(DEFAULT_READONLY_PATHS)
    for name, paths in (("masked_paths", masked), ("readonly_paths", readonly)):
        for p in paths:
            if not p.startswith("/"):
                raise InvalidArgument(
                    f"linux.security_context.{name}: {p!r} is not an absolute path"
                )
    return masked, readonly
