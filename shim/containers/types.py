"""Container states and what the container manager keeps in ``ContainerRecord.details``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from podsandbox.types import Process


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
    mounts: list[dict[str, Any]] = field(default_factory=list)  # CRI mounts, as given
    resources: dict[str, Any] = field(default_factory=dict)  # OCI linux.resources in force
    cgroup_path: str = ""  # linux.cgroupsPath: relative to each hierarchy's root
    config_json: str = ""  # the CRI ContainerConfig, for status and restarts
    image_id: str = ""
    # the process identity the spec gives the container's first process (uid, gid,
    # supplemental_groups), reported as ContainerStatus.user
    user: dict[str, Any] = field(default_factory=dict)
    image_volume_ids: list[str] = field(default_factory=list)  # images mounted as volumes
    # the mapping whose shifted layer copies its rootfs uses (user namespace, copy mode)
    shifted_key: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContainerDetails:
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in data.items() if k in names}
        for key in ("pid", "conmon"):
            if d.get(key):
                d[key] = Process(**d[key])
        return cls(**d)
