"""Container records -> CRI Container / ContainerStatus messages, and List filters. Pure."""

from __future__ import annotations

import json

from google.protobuf import json_format

from shim.containers.types import CState
from shim.cri import api_pb2 as pb
from shim.nsview.model import privileged_of, spec_namespaces
from shim.oci.resources import resources_from_oci
from shim.store import ContainerRecord

_STATES = {
    CState.CREATING: pb.CONTAINER_CREATED,
    CState.CREATED: pb.CONTAINER_CREATED,
    CState.RUNNING: pb.CONTAINER_RUNNING,
    CState.EXITED: pb.CONTAINER_EXITED,
    CState.UNKNOWN: pb.CONTAINER_UNKNOWN,
    CState.REMOVING: pb.CONTAINER_EXITED,
}


def state(rec: ContainerRecord) -> pb.ContainerState:
    return _STATES.get(rec.state, pb.CONTAINER_UNKNOWN)


def _metadata(rec: ContainerRecord) -> pb.ContainerMetadata:
    return pb.ContainerMetadata(name=rec.name, attempt=rec.attempt)


def to_container(rec: ContainerRecord) -> pb.Container:
    return pb.Container(
        id=rec.id, pod_sandbox_id=rec.sandbox_id, metadata=_metadata(rec),
        image=pb.ImageSpec(image=rec.image), image_ref=rec.image_ref, image_id=rec.image_ref,
        state=state(rec),
        created_at=rec.created_at, labels=rec.labels, annotations=rec.annotations,
    )


def to_status(rec: ContainerRecord) -> pb.ContainerStatus:
    d = rec.details
    mounts = [json_format.ParseDict(m, pb.Mount()) for m in d.mounts]
    st = pb.ContainerStatus(
        id=rec.id, metadata=_metadata(rec), state=state(rec), created_at=rec.created_at,
        started_at=rec.started_at, finished_at=rec.finished_at, exit_code=rec.exit_code,
        image=pb.ImageSpec(image=rec.image), image_ref=rec.image_ref, image_id=rec.image_ref,
        reason=d.reason,
        message=d.message, labels=rec.labels, annotations=rec.annotations, mounts=mounts,
        log_path=d.log_path,
    )
    if d.user:
        st.user.linux.CopyFrom(pb.LinuxContainerUser(**d.user))
    if d.resources:
        st.resources.CopyFrom(pb.ContainerResources(linux=resources_from_oci(d.resources)))
    return st


def cgroup_namespace(runtime_spec: object) -> str:
    """"private" or "host" as the spec says; "" when there is no spec to tell."""
    kinds = spec_namespaces(runtime_spec)
    if kinds is None:
        return ""
    return "private" if "cgroup" in kinds else "host"


def verbose_info(rec: ContainerRecord) -> dict[str, str]:
    d = rec.details
    try:
        with open(f"{d.bundle}/config.json") as f:
            runtime_spec = json.load(f)
    except OSError:
        runtime_spec = None
    info = {
        "sandboxID": rec.sandbox_id,
        "pid": d.pid.pid if d.pid else 0,
        "conmonPid": d.conmon.pid if d.conmon else 0,
        "runtimeHandler": d.handler,
        "bundle": d.bundle,
        "rootfs": d.rootfs,
        "runtimeSpec": runtime_spec,
        "privileged": privileged_of(d.config_json),
        # a cgroup namespace of its own on cgroup v2 hosts, the node's otherwise (shim/oci/spec)
        "cgroupNamespace": cgroup_namespace(runtime_spec),
    }
    return {"info": json.dumps(info, sort_keys=True)}


def matches(rec: ContainerRecord, f: pb.ContainerFilter | pb.ContainerStatsFilter | None) -> bool:
    """ListContainers' filter, and ListContainerStats' (the same without a state)."""
    if f is None:
        return True
    if f.id and not rec.id.startswith(f.id):
        return False
    if f.pod_sandbox_id and not rec.sandbox_id.startswith(f.pod_sandbox_id):
        return False
    if isinstance(f, pb.ContainerFilter) and f.HasField("state") and state(rec) != f.state.state:
        return False
    return all(rec.labels.get(k) == v for k, v in f.label_selector.items())
