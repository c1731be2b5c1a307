"""Typed views of a pod for readers outside ``podsandbox/``, who may not read its details:
where it lives on the host (stats), what a container joins (the container manager, the spec
generator), what its status reports (PodSandboxStatus, ``tether ns``). Pure functions of a
record; the sandbox manager exposes them, and tools reading the store use them directly."""

from __future__ import annotations

import os

from podsandbox import cgroups
from podsandbox.repository import SandboxRecord
from podsandbox.types import (
    PIN_KINDS,
    Mode,
    PodContext,
    PodHostView,
    PodNamespace,
    PodStatus,
)


def host_view(rec: SandboxRecord) -> PodHostView:
    """The pod's cgroups and network namespace."""
    d = rec.details
    return PodHostView(cgroup=d.cgroup, parent=d.cgroup.rsplit("/", 1)[0] if "/" in d.cgroup
                       else "", netns=d.pins.get("net") if d.modes.network is Mode.POD else None)


def pod_context(rec: SandboxRecord, cgroup_driver: str) -> PodContext:
    d = rec.details
    m = d.modes
    user_ns = d.userns
    return PodContext(
        sandbox_id=rec.id, network=m.network, ipc=m.ipc, uts=m.uts, pid=m.pid,
        ns_paths={k: v for k, v in d.pins.items() if k != "user"}, hostname=d.hostname,
        hostname_path=os.path.join(d.sandbox_dir, "hostname"),
        resolv_conf_path=os.path.join(d.sandbox_dir, "resolv.conf"),
        shm_path=d.shm_path,
        # containers sit beside the pause-holder, in the parent it was made in
        cgroup_parent=cgroups.parent_name(host_view(rec).parent, cgroup_driver),
        sysctls=dict(d.sysctls),
        userns_path=d.pins.get("user", "") if user_ns else "",
        uid_mappings=user_ns.uids if user_ns else (),
        gid_mappings=user_ns.gids if user_ns else (),
        runtime_handler=rec.runtime_handler, log_directory=d.log_directory,
    )


def status_view(rec: SandboxRecord) -> PodStatus:
    d = rec.details
    return PodStatus(
        modes=d.modes,
        namespaces=tuple(PodNamespace(k, d.modes.mode_of(k), d.pins.get(k, ""),
                                      d.inodes.get(k)) for k in PIN_KINDS),
        userns=d.userns, ips=tuple(d.ips), holder=d.holder, launcher=d.launcher,
        cgroup=d.cgroup, sandbox_dir=d.sandbox_dir, shm_path=d.shm_path, hostname=d.hostname,
        cni_network=d.cni_network, cni_result=d.cni_result, port_mappings=d.port_mappings,
        privileged=d.privileged,
    )
