"""Typed views of a container for readers outside the container manager, who may not read
its details (as ``podsandbox/views.py`` is for pods): what its status reports (the CRI edge,
``tether ns``), where it lives on the node (stats, metrics), its running process (the
namespace policy's TARGET). Pure functions of a record, but for ``running_pid``, which asks
``/proc`` whether the recorded process still is the one recorded. The dicts are the record's
own (the status calls are polled): read them, never change them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from podsandbox import kernel
from shim.oci.types import Mount
from shim.store import ContainerRecord


@dataclass(frozen=True)
class StatusView:
    """What ContainerStatus (and its verbose info) report besides the record's columns."""

    reason: str
    message: str
    mounts: tuple[Mount, ...]
    log_path: str
    user: dict[str, Any]  # uid, gid, supplemental_groups of the first process
    resources: dict[str, Any]  # OCI linux.resources in force
    pid: int  # as recorded (0: none)
    conmon_pid: int
    handler: str
    bundle: str
    rootfs: str
    privileged: bool


@dataclass(frozen=True)
class HostView:
    """Where the container lives on the node."""

    cgroup_path: str  # OCI linux.cgroupsPath (cgroupfs path or systemd slice:prefix:name)
    upper: str  # its writable layer ("" before it has one)
    resources: dict[str, Any]  # OCI linux.resources in force


def status_view(rec: ContainerRecord) -> StatusView:
    d = rec.details
    return StatusView(
        reason=d.reason, message=d.message, mounts=tuple(d.mounts), log_path=d.log_path,
        user=d.user, resources=d.resources, pid=d.pid.pid if d.pid else 0,
        conmon_pid=d.conmon.pid if d.conmon else 0, handler=d.handler, bundle=d.bundle,
        rootfs=d.rootfs, privileged=d.privileged)


def host_view(rec: ContainerRecord) -> HostView:
    d = rec.details
    return HostView(cgroup_path=d.cgroup_path,
                    upper=f"{d.container_dir}/upper" if d.container_dir else "",
                    resources=d.resources)


def running_pid(rec: ContainerRecord) -> int:
    """The container's first process if it still runs (pid and start time as recorded), else
    0: a reused pid is never taken for it."""
    p = rec.details.pid
    return p.pid if p is not None and kernel.alive(p.pid, p.start_time) else 0
