"""CRI messages <-> the container layer's types: CreateContainer's config validated into a
``ContainerSpec`` (every refusal InvalidArgument naming the CRI field), the resources of
UpdateContainerResources, and the Container / ContainerStatus views of a record, List
filters. Pure functions: protobuf goes no further down than this module."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from podsandbox.types import IDMapping
from shim.containers.types import CState
from shim.containers.views import status_view
from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.nsview.model import spec_namespaces
from shim.oci.types import (
    Capabilities,
    ContainerSpec,
    Device,
    HugepageLimit,
    ImageVolume,
    Mount,
    PidMode,
    PodConfig,
    Propagation,
    Resources,
    SecurityContext,
    SecurityProfile,
)
from shim.store import ContainerRecord

SC = "linux.security_context"
NSO = f"{SC}.namespace_options"
_PROPAGATION = {
    pb.PROPAGATION_PRIVATE: Propagation.PRIVATE,
    pb.PROPAGATION_HOST_TO_CONTAINER: Propagation.HOST_TO_CONTAINER,
    pb.PROPAGATION_BIDIRECTIONAL: Propagation.BIDIRECTIONAL,
}
_PROPAGATION_PB = {v: k for k, v in _PROPAGATION.items()}
_PID = {pb.POD: PidMode.POD, pb.CONTAINER: PidMode.CONTAINER, pb.NODE: PidMode.NODE,
        pb.TARGET: PidMode.TARGET}


# --- CreateContainer -------------------------------------------------------------------------

def container_spec(cfg: pb.ContainerConfig, sandbox: pb.PodSandboxConfig) -> ContainerSpec:
    """CreateContainer's ``config`` (with its ``sandbox_config``), checked and typed."""
    check_config(cfg)
    if not cfg.metadata.name:
        raise InvalidArgument("config.metadata.name: required")
    if not cfg.image.image:
        raise InvalidArgument("config.image.image: required")
    sc = cfg.linux.security_context
    if sc.privileged and not sandbox.linux.security_context.privileged:
        raise InvalidArgument(
            f"{SC}.privileged: the pod is not privileged, so its containers cannot be")
    if cfg.working_dir and not cfg.working_dir.startswith("/"):
        raise InvalidArgument(f"working_dir {cfg.working_dir!r}: must be an absolute path")
    md = sandbox.metadata
    return ContainerSpec(
        name=cfg.metadata.name, attempt=cfg.metadata.attempt, image=cfg.image.image,
        command=tuple(cfg.command), args=tuple(cfg.args), working_dir=cfg.working_dir,
        envs=tuple(_env(i, kv) for i, kv in enumerate(cfg.envs)),
        mounts=tuple(_mount(i, m) for i, m in enumerate(cfg.mounts)),
        devices=tuple(Device(d.container_path, d.host_path, d.permissions)
                      for d in cfg.devices),
        labels=dict(cfg.labels), annotations=dict(cfg.annotations), log_path=cfg.log_path,
        stdin=cfg.stdin, stdin_once=cfg.stdin_once, tty=cfg.tty,
        stop_signal=pb.Signal.Name(cfg.stop_signal).removeprefix("SIGNAL_")
        if cfg.stop_signal else "",
        resources=resources(cfg.linux.resources),
        security=_security(sc, sandbox.linux.security_context),
        pod=PodConfig(name=md.name, namespace=md.namespace, uid=md.uid),
    )


def _short(v: str) -> str:
    return repr(v[:64] + ("..." if len(v) > 64 else ""))


def check_config(cfg: pb.ContainerConfig) -> None:
    """What the runtime would only refuse at StartContainer (as INTERNAL runtime text), or
    not at all, refused here with InvalidArgument naming the field."""
    sc = cfg.linux.security_context
    if sc.HasField("run_as_group") and not sc.HasField("run_as_user") and not sc.run_as_username:
        # as the kubelet and containerd refuse it: a group with the image's user is ambiguous
        raise InvalidArgument(
            "config.linux.security_context.run_as_group: set without run_as_user or "
            "run_as_username")
    for field, values in (("command", cfg.command), ("args", cfg.args)):
        for i, v in enumerate(values):
            if "\0" in v:
                raise InvalidArgument(f"config.{field}[{i}]: {_short(v)} contains a NUL byte")
    if cfg.command and not cfg.command[0]:
        raise InvalidArgument("config.command[0]: empty")
    for i, kv in enumerate(cfg.envs):
        if not kv.key or "=" in kv.key or "\0" in kv.key:
            raise InvalidArgument(f"config.envs[{i}].key: {_short(kv.key)} is not a variable "
                                  "name (empty, or has '=' or NUL)")
        if b"\0" in kv.value:  # bytes in the CRI
            raise InvalidArgument(f"config.envs[{i}].value: contains a NUL byte")
    if cfg.stop_signal not in pb.Signal.values():
        raise InvalidArgument(f"config.stop_signal: unknown value {cfg.stop_signal}")
    for i, m in enumerate(cfg.mounts):
        for name in ("container_path", "host_path"):
            path = getattr(m, name)
            if "\0" in path:
                raise InvalidArgument(f"config.mounts[{i}].{name}: contains a NUL byte")
        if m.host_path and not m.host_path.startswith("/"):
            raise InvalidArgument(f"config.mounts[{i}].host_path: {_short(m.host_path)} must "
                                  "be an absolute path")
    if cfg.log_path and (cfg.log_path.startswith("/") or ".." in cfg.log_path.split("/")
                         or "\0" in cfg.log_path):
        raise InvalidArgument(f"config.log_path: {_short(cfg.log_path)} must be a path "
                              "relative to the pod's log_directory, without '..'")


def _env(i: int, kv: pb.KeyValue) -> tuple[str, str]:
    try:
        return kv.key, kv.value.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidArgument(f"envs[{i}].value ({kv.key}): not UTF-8: {e}") from e


def _mappings(maps: Iterable[pb.IDMapping]) -> tuple[IDMapping, ...]:
    return tuple(IDMapping(m.container_id, m.host_id, m.length) for m in maps)


def _mount(i: int, m: pb.Mount) -> Mount:
    field = f"mounts[{i}]"
    prop = _PROPAGATION.get(m.propagation)
    if prop is None:
        raise InvalidArgument(f"{field}.propagation: unknown value {m.propagation}")
    image = None
    if m.HasField("image"):
        image = ImageVolume(image=m.image.image, annotations=dict(m.image.annotations),
                            user_specified_image=m.image.user_specified_image,
                            runtime_handler=m.image.runtime_handler,
                            image_ref=m.image.image_ref)
        if m.image.image:  # an image volume: the container manager mounts it read-only
            if m.host_path:
                raise InvalidArgument(f"{field}: an image volume has no host_path")
            if not m.readonly:
                raise InvalidArgument(f"{field}.readonly: an image volume is read-only")
            sub = m.image_sub_path
            if sub and (sub.startswith("/") or ".." in sub.split("/")):
                raise InvalidArgument(
                    f"{field}.image_sub_path {sub!r}: must be a relative path inside the image")
    return Mount(
        container_path=m.container_path, host_path=m.host_path, readonly=m.readonly,
        selinux_relabel=m.selinux_relabel, propagation=prop,
        uid_mappings=_mappings(m.uidMappings), gid_mappings=_mappings(m.gidMappings),
        recursive_read_only=m.recursive_read_only, image=image,
        image_sub_path=m.image_sub_path, mount_options=tuple(m.mount_options),
    )


def _profile(holder: pb.LinuxContainerSecurityContext | pb.LinuxSandboxSecurityContext,
             msg_field: str, str_field: str, where: str) -> SecurityProfile:
    """A SecurityProfile message, else its deprecated string form ("" kind: neither set)."""
    if holder.HasField(msg_field):
        p = getattr(holder, msg_field)
        name = f"{where}.{msg_field}"
        if p.profile_type == pb.SecurityProfile.RuntimeDefault:
            return SecurityProfile("runtime", "", name)
        if p.profile_type == pb.SecurityProfile.Unconfined:
            return SecurityProfile("unconfined", "", name)
        if p.profile_type == pb.SecurityProfile.Localhost:
            if not p.localhost_ref:
                raise InvalidArgument(f"{name}.localhost_ref: empty for a Localhost profile")
            return SecurityProfile("localhost", p.localhost_ref, name)
        raise InvalidArgument(f"{name}.profile_type: unknown value {p.profile_type}")
    value = getattr(holder, str_field, "") if str_field else ""
    name = f"{where}.{str_field}"
    if not value:
        return SecurityProfile("", "", name)
    if value in ("runtime/default", "docker/default"):
        return SecurityProfile("runtime", "", name)
    if value == "unconfined":
        return SecurityProfile("unconfined", "", name)
    if value.startswith("localhost/") and len(value) > len("localhost/"):
        return SecurityProfile("localhost", value.removeprefix("localhost/"), name)
    raise InvalidArgument(
        f"{name} {value!r}: expected 'runtime/default', 'unconfined' or 'localhost/<profile>'"
    )


def _security(sc: pb.LinuxContainerSecurityContext,
              pod_sc: pb.LinuxSandboxSecurityContext) -> SecurityContext:
    nso = sc.namespace_options
    pid = _PID.get(nso.pid)
    if pid is None:
        raise InvalidArgument(f"{NSO}.pid: unknown mode {nso.pid}")
    # the container's own profile, else the pod's (which is only read then)
    seccomp = _profile(sc, "seccomp", "seccomp_profile_path", SC)
    if not seccomp.kind:
        seccomp = _profile(pod_sc, "seccomp", "seccomp_profile_path",
                           "pod linux.security_context")
    apparmor = _profile(sc, "apparmor", "apparmor_profile", SC)
    if not apparmor.kind:
        apparmor = _profile(pod_sc, "apparmor", "", "pod linux.security_context")
    caps = sc.capabilities
    return SecurityContext(
        privileged=sc.privileged,
        capabilities=Capabilities(tuple(caps.add_capabilities), tuple(caps.drop_capabilities),
                                  tuple(caps.add_ambient_capabilities)),
        pid=pid, target_id=nso.target_id,
        run_as_user=sc.run_as_user.value if sc.HasField("run_as_user") else None,
        run_as_group=sc.run_as_group.value if sc.HasField("run_as_group") else None,
        run_as_username=sc.run_as_username, readonly_rootfs=sc.readonly_rootfs,
        supplemental_groups=tuple(sc.supplemental_groups),
        supplemental_groups_strict=sc.supplemental_groups_policy == pb.Strict,
        no_new_privs=sc.no_new_privs, masked_paths=tuple(sc.masked_paths),
        readonly_paths=tuple(sc.readonly_paths), seccomp=seccomp, apparmor=apparmor,
    )


def resources(res: pb.LinuxContainerResources) -> Resources:
    """CreateContainer's and UpdateContainerResources' ``linux`` resources (checked where
    they become OCI ones, against the node: ``shim.oci.resources.resources_to_oci``)."""
    return Resources(
        cpu_period=res.cpu_period, cpu_quota=res.cpu_quota, cpu_shares=res.cpu_shares,
        memory_limit_in_bytes=res.memory_limit_in_bytes, oom_score_adj=res.oom_score_adj,
        cpuset_cpus=res.cpuset_cpus, cpuset_mems=res.cpuset_mems,
        hugepage_limits=tuple(HugepageLimit(h.page_size, h.limit)
                              for h in res.hugepage_limits),
        unified=dict(res.unified),
        memory_swap_limit_in_bytes=res.memory_swap_limit_in_bytes,
    )


# --- records -> CRI messages ------------------------------------------------------------------

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


def _pb_mappings(maps: Iterable[IDMapping]) -> list[pb.IDMapping]:
    return [pb.IDMapping(container_id=x.container_id, host_id=x.host_id, length=x.length)
            for x in maps]


def _pb_mount(m: Mount) -> pb.Mount:
    """A mount as CreateContainer gave it (an image volume's image_ref added)."""
    out = pb.Mount(
        container_path=m.container_path, host_path=m.host_path, readonly=m.readonly,
        selinux_relabel=m.selinux_relabel, propagation=_PROPAGATION_PB[m.propagation],
        uidMappings=_pb_mappings(m.uid_mappings), gidMappings=_pb_mappings(m.gid_mappings),
        recursive_read_only=m.recursive_read_only, image_sub_path=m.image_sub_path,
        mount_options=m.mount_options)
    if m.image is not None:
        i = m.image
        out.image.CopyFrom(pb.ImageSpec(image=i.image, annotations=i.annotations,
                                        user_specified_image=i.user_specified_image,
                                        runtime_handler=i.runtime_handler,
                                        image_ref=i.image_ref))
    return out


def resources_from_oci(d: Mapping[str, Any], oom_score_adj: int = 0
                       ) -> pb.LinuxContainerResources:
    """The CRI view of ``linux.resources`` (for ContainerStatus.resources)."""
    cpu = d.get("cpu") or {}
    memory = d.get("memory") or {}
    res = pb.LinuxContainerResources(
        cpu_period=int(cpu.get("period") or 0),
        cpu_quota=int(cpu.get("quota") or 0),
        cpu_shares=int(cpu.get("shares") or 0),
        cpuset_cpus=str(cpu.get("cpus") or ""),
        cpuset_mems=str(cpu.get("mems") or ""),
        memory_limit_in_bytes=int(memory.get("limit") or 0),
        memory_swap_limit_in_bytes=int(memory.get("swap") or 0),
        oom_score_adj=oom_score_adj,
    )
    for h in d.get("hugepageLimits") or ():
        res.hugepage_limits.add(page_size=str(h.get("pageSize", "")), limit=int(h.get("limit", 0)))
    for k, v in (d.get("unified") or {}).items():
        res.unified[k] = str(v)
    return res


def to_status(rec: ContainerRecord) -> pb.ContainerStatus:
    d = status_view(rec)
    mounts = [_pb_mount(m) for m in d.mounts]
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


def verbose_info(rec: ContainerRecord, runtime_spec: dict[str, Any] | None) -> dict[str, str]:
    """``runtime_spec``: the container's OCI spec (``ContainerManager.runtime_spec``)."""
    d = status_view(rec)
    info = {
        "sandboxID": rec.sandbox_id,
        "pid": d.pid,
        "conmonPid": d.conmon_pid,
        "runtimeHandler": d.handler,
        "bundle": d.bundle,
        "rootfs": d.rootfs,
        "runtimeSpec": runtime_spec,
        "privileged": d.privileged,
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
