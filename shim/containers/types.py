"""Container states and what the container manager keeps in ``ContainerRecord.details``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from podsandbox.types import IDMapping, Process, cri_json_linux
from shim.oci.types import ImageVolume, Mount, Propagation


class CState(StrEnum):
    CREATING = "creating"  # CreateContainer under way
    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"
    UNKNOWN = "unknown"  # its monitor vanished without an exit record
    REMOVING = "removing"


@dataclass
class ContainerDetails:
    handler: str = ""  # runtime handler (runc, crun)
    container_dir: str = ""  # <root>/containers/<id>: rootfs mount, upper/work
    bundle: str = ""  # <run>/containers/<id>: config.json, conmon files
    rootfs: str = ""
    log_path: str = ""
    tty: bool = False
    stdin: bool = False
    stdin_once: bool = False
    pid: Process | None = None  # the container's init process
    conmon: Process | None = None
    reason: str = ""
    message: str = ""
    stop_signal: str = "SIGTERM"
    mounts: list[Mount] = field(default_factory=list)  # as asked (ContainerStatus.mounts)
    resources: dict[str, Any] = field(default_factory=dict)  # OCI linux.resources in force
    cgroup_path: str = ""  # linux.cgroupsPath: relative to each hierarchy's root
    privileged: bool = False  # its security context says so (verbose status, tether ns)
    image_id: str = ""
    # the process identity the spec gives the container's first process (uid, gid,
    # supplemental_groups), reported as ContainerStatus.user
    user: dict[str, Any] = field(default_factory=dict)
    image_volume_ids: list[str] = field(default_factory=list)  # images mounted as volumes
    # the mapping whose shifted layer copies its rootfs uses (user namespace, copy mode)
    shifted_key: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContainerDetails:
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in data.items() if k in names}
        for key in ("pid", "conmon"):
            if d.get(key):
                d[key] = Process(**d[key])
        d["mounts"] = [_mount(m) for m in d.get("mounts") or ()]
        if "config_json" in data and "privileged" not in data:
            # written before the privilege was kept on its own: the whole CRI config was
            sc = cri_json_linux(data["config_json"]).get("securityContext") or {}
            d["privileged"] = bool(sc.get("privileged"))
        return cls(**d)


def _mount(m: dict[str, Any]) -> Mount:
    """A stored mount; older records kept the CRI message's JSON (field names and enum names
    the same, but for the id mappings' and the omitted defaults)."""
    names = {f.name for f in dataclasses.fields(Mount)}
    d = {k: v for k, v in m.items() if k in names}
    for key, old in (("uid_mappings", "uidMappings"), ("gid_mappings", "gidMappings")):
        d[key] = tuple(IDMapping(x.get("container_id", 0), x.get("host_id", 0),
                                 x.get("length", 0)) for x in m.get(key, m.get(old)) or ())
    d["propagation"] = Propagation(m.get("propagation") or Propagation.PRIVATE)
    if m.get("image") is not None:
        d["image"] = ImageVolume(**m["image"])
    d["mount_options"] = tuple(m.get("mount_options") or ())
    return Mount(**d)
