"""What a container asks (``ContainerSpec``) in, OCI runtime spec (config.json) out: a pure
function.

Everything the spec depends on besides the container's spec comes in as arguments
(``PodContext``, ``ImageConfig``, ``ImageFiles``, ``RuntimeOptions``, ``device_info``): no file
is read but a Localhost seccomp profile, no device is stat'ed. ``container_convert`` checked
what the request alone decides; what needs the node, the image or the pod too is refused
here, with ``InvalidArgument`` naming the CRI field. The result is accepted by runc 1.1 and
crun 1.8 (hence ``ociVersion`` 1.0.2).
"""

from __future__ import annotations

import copy
import posixpath
from collections.abc import Mapping
from typing import Any

from podsandbox.types import IDMapping, Mode, PodContext
from shim.errors import InvalidArgument
from shim.images.manifest import ImageConfig
from shim.oci import caps as _caps
from shim.oci import mounts as _mounts
from shim.oci import resources as _resources
from shim.oci import seccomp
from shim.oci import users as _users
from shim.oci.resources import cgroups_path, resources_to_oci
from shim.oci.types import ContainerSpec, ImageFiles, PidMode, RuntimeOptions, SecurityProfile

__all__ = [
    "OCI_VERSION",
    "cgroups_path",
    "exec_process",
    "generate",
    "merge_args",
    "resources_to_oci",
]

OCI_VERSION = "1.0.2"  # crun 1.8.1 rejects 1.3.0
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SC = "linux.security_context"
NSO = f"{SC}.namespace_options"

# Namespaced sysctls, by the namespace they belong to (as the kubelet classifies them).
_SYSCTL_NS = (
    ("net.", "net"),
    ("kernel.shm", "ipc"),
    ("kernel.msg", "ipc"),
    ("kernel.sem", "ipc"),
    ("fs.mqueue.", "ipc"),
    ("kernel.hostname", "uts"),
    ("kernel.domainname", "uts"),
)


def merge_args(config: ContainerSpec, image: ImageConfig) -> list[str]:
    """Kubernetes' rule: command replaces the image Entrypoint and drops its Cmd; args
    replaces Cmd."""
    if config.command:
        args = [*config.command, *config.args]
    elif config.args:
        args = [*image.entrypoint, *config.args]
    else:
        args = [*image.entrypoint, *image.cmd]
    if not args:
        raise InvalidArgument(
            "command: no command given and the image has neither Entrypoint nor Cmd"
        )
    return args


def _env(config: ContainerSpec, image: ImageConfig, hostname: str, home: str) -> list[str]:
    env: dict[str, str] = {}
    if hostname:
        env["HOSTNAME"] = hostname
    for e in image.env:
        k, sep, v = e.partition("=")
        if k and sep:
            env[k] = v
    env.update(config.envs)
    env.setdefault("PATH", DEFAULT_PATH)
    if config.tty:
        env.setdefault("TERM", "xterm")
    env.setdefault("HOME", home)
    return [f"{k}={v}" for k, v in env.items()]


def _cwd(config: ContainerSpec, image: ImageConfig) -> str:
    if config.working_dir:  # absolute (container_convert)
        return posixpath.normpath(config.working_dir)
    if image.working_dir:
        return posixpath.normpath(posixpath.join("/", image.working_dir))
    return "/"


# --- seccomp and AppArmor -------------------------------------------------------------------

def _seccomp(
    profile: SecurityProfile, privileged: bool, runtime: RuntimeOptions,
    capabilities: frozenset[str],
) -> dict[str, Any] | None:
    """``linux.seccomp``; None = unconfined. ``capabilities``: the bounding set, which the
    profiles' capability-conditional rules look at (as containerd and Docker do)."""
    kind, ref, field = profile.kind, profile.ref, profile.field
    if privileged or kind in ("", "unconfined"):
        return None  # the kubelet's default is Unconfined
    if not runtime.seccomp_enabled:
        if kind == "localhost":
            raise InvalidArgument(
                f"{field}: seccomp profile {ref!r} requested but seccomp is disabled on this node"
            )
        return None
    if kind == "runtime":
        return dict(seccomp.default_profile(capabilities=capabilities))
    path = ref if ref.startswith("/") else posixpath.join(runtime.seccomp_profile_root, ref)
    try:
        return dict(seccomp.load_localhost(path, capabilities=capabilities))
    except InvalidArgument as e:
        raise InvalidArgument(f"{field}: {e.message}", detail=e.detail) from None


def _apparmor(profile: SecurityProfile, privileged: bool, runtime: RuntimeOptions) -> str:
    kind, ref, field = profile.kind, profile.ref, profile.field
    if kind == "localhost":
        if not runtime.apparmor_enabled:
            raise InvalidArgument(
                f"{field}: AppArmor profile {ref!r} requested but AppArmor is not enabled on "
                f"this node"
            )
        return ref
    if kind == "unconfined" or privileged or not runtime.apparmor_enabled:
        return ""  # RuntimeDefault on a node without AppArmor: unconfined, as containerd does
    return runtime.apparmor_default_profile


# --- namespaces and sysctls -----------------------------------------------------------------

def _pod_ns(kind: str, mode: Mode, pod: PodContext) -> dict[str, str] | None:
    oci = {"net": "network", "ipc": "ipc", "uts": "uts", "pid": "pid"}[kind]
    if mode == Mode.NODE:
        return None
    path = pod.ns_paths.get(kind)
    if not path:
        raise InvalidArgument(
            f"pod {pod.sandbox_id}: has no pinned {kind} namespace to join (mode {mode})"
        )
    return {"type": oci, "path": path}


def _namespaces(
    pid: PidMode, target_id: str, pod: PodContext, runtime: RuntimeOptions, target_pid: int
) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    if pod.userns_path:
        out.append({"type": "user", "path": pod.userns_path})
    for kind, mode in (("net", pod.network), ("ipc", pod.ipc), ("uts", pod.uts)):
        ns = _pod_ns(kind, Mode(mode), pod)
        if ns:
            out.append(ns)
    if pid is PidMode.CONTAINER:
        out.append({"type": "pid"})
    elif pid is PidMode.POD:
        if Mode(pod.pid) == Mode.CONTAINER:
            out.append({"type": "pid"})  # the pod shares none: the container gets its own
        else:
            ns = _pod_ns("pid", Mode(pod.pid), pod)
            if ns:
                out.append(ns)
    elif pid is PidMode.TARGET:
        if target_pid <= 0:
            raise InvalidArgument(
                f"{NSO}.target_id {target_id!r}: target container is not running"
            )
        out.append({"type": "pid", "path": f"/proc/{target_pid}/ns/pid"})
    out.append({"type": "mount"})
    if runtime.cgroup_v2:
        out.append({"type": "cgroup"})
    return out


def _sysctls(pod: PodContext) -> dict[str, str]:
    modes = {"net": Mode(pod.network), "ipc": Mode(pod.ipc), "uts": Mode(pod.uts)}
    out: dict[str, str] = {}
    for key, value in sorted(pod.sysctls.items()):
        k = key
        if "/" in k:  # "net/ipv4/ip_forward" form: '/' and '.' swap roles
            k = k.translate(str.maketrans("/.", "./"))
        ns = next((n for prefix, n in _SYSCTL_NS if k.startswith(prefix)), None)
        if ns is None:
            raise InvalidArgument(
                f"linux.sysctls[{key!r}]: not a namespaced sysctl; it cannot be set per pod"
            )
        if modes[ns] == Mode.NODE:
            continue  # the node's namespace: never changed from a pod
        out[k] = value
    return out


# --- the spec ---------------------------------------------------------------------------------

def generate(
    container_id: str,
    config: ContainerSpec,
    pod: PodContext,
    image: ImageConfig,
    files: ImageFiles,
    rootfs: str,
    runtime: RuntimeOptions,
    target_pid: int = 0,
    device_info: Mapping[str, tuple[str, int, int, int]] | None = None,
    *,
    unmasked_proc: bool = False,
) -> dict[str, Any]:
    """The config.json object of container ``container_id``.

    ``target_pid``: pid of the target container's init, for namespace_options.pid TARGET.
    ``device_info``: host path -> (type, major, minor, file mode) of each requested device
    (and of every host device for a privileged container). ``unmasked_proc``: the container's
    proc mount type is Unmasked (no masked or read-only paths).
    """
    sc = config.security
    privileged = sc.privileged  # only in a privileged pod (container_convert)

    user = _users.resolve(sc, image.user, files)
    if pod.userns_path:
        _check_mapped(user, pod)
    capsets = _caps.compute(
        sc.capabilities.add,
        sc.capabilities.drop,
        sc.capabilities.add_ambient,
        privileged=privileged,
        root=user.uid == 0,
        host=runtime.host_capabilities,
        default=runtime.default_capabilities,
        field=f"{SC}.capabilities",
    )
    uts_own = Mode(pod.uts) == Mode.POD
    process: dict[str, Any] = {
        "terminal": bool(config.tty),
        "user": {"uid": user.uid, "gid": user.gid, "additionalGids": list(user.additional_gids)},
        "args": merge_args(config, image),
        "env": _env(config, image, pod.hostname, user.home),
        "cwd": _cwd(config, image),
        "capabilities": capsets.to_oci(),
        "noNewPrivileges": bool(sc.no_new_privs),
    }
    oom = min(max(config.resources.oom_score_adj, runtime.min_oom_score_adj), 1000)
    process["oomScoreAdj"] = oom
    profile = _apparmor(sc.apparmor, privileged, runtime)
    if profile:
        process["apparmorProfile"] = profile

    resources = resources_to_oci(config.resources, runtime)
    nodes, dev_rules = _resources.devices(config.devices, device_info or {}, privileged)
    resources["devices"] = _resources.default_device_rules(privileged) + dev_rules

    cri_mounts, propagation = _mounts.cri_mounts(config.mounts, runtime.recursive_read_only)
    mounts = _mounts.merge(
        _mounts.standard_mounts(pod, readonly_rootfs=sc.readonly_rootfs, privileged=privileged),
        cri_mounts,
    )
    masked, readonly = _mounts.masked_and_readonly(sc, privileged=privileged,
                                                   unmasked=unmasked_proc)

    linux_spec: dict[str, Any] = {
        "namespaces": _namespaces(sc.pid, sc.target_id, pod, runtime, target_pid),
        "resources": resources,
        "cgroupsPath": cgroups_path(pod, container_id, runtime),
        "devices": nodes,
        "maskedPaths": masked,
        "readonlyPaths": readonly,
    }
    if pod.userns_path:
        linux_spec["uidMappings"] = _id_mappings(pod.uid_mappings)
        linux_spec["gidMappings"] = _id_mappings(pod.gid_mappings)
    sysctl = _sysctls(pod)
    if sysctl:
        linux_spec["sysctl"] = sysctl
    if propagation:
        linux_spec["rootfsPropagation"] = propagation
    seccomp = _seccomp(sc.seccomp, privileged, runtime, frozenset(capsets.bounding))
    if seccomp is not None:
        linux_spec["seccomp"] = seccomp

    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": rootfs, "readonly": bool(sc.readonly_rootfs)},
        "mounts": mounts,
        "annotations": _annotations(container_id, config, pod),
        "linux": linux_spec,
    }
    if uts_own and pod.hostname:
        spec["hostname"] = pod.hostname
    return spec


def _check_mapped(user: _users.User, pod: PodContext) -> None:
    """In a pod's own user namespace the first process's ids must be mapped: the runtime
    could not switch to them, and the container would fail to start."""
    for field, ids, maps in ((f"{SC}.run_as_user", (user.uid,), pod.uid_mappings),
                             (f"{SC}.run_as_group", (user.gid,), pod.gid_mappings),
                             (f"{SC}.supplemental_groups", user.additional_gids,
                              pod.gid_mappings)):
        for i in ids:
            if not any(m.covers(i) for m in maps):
                raise InvalidArgument(f"{field}: id {i} (as asked, or the image's) is not "
                                      "mapped in the pod's user namespace")


def _id_mappings(maps: tuple[IDMapping, ...]) -> list[dict[str, int]]:
    return [{"containerID": m.container_id, "hostID": m.host_id, "size": m.length}
            for m in maps]


def _annotations(container_id: str, config: ContainerSpec, pod: PodContext) -> dict[str, str]:
    """Tether's own only: the CRI's annotations are not passed on (runtimes act on some)."""
    md = config.pod
    return {
        "io.kubernetes.cri.container-type": "container",
        "io.kubernetes.cri.container-id": container_id,
        "io.kubernetes.cri.container-name": config.name,
        "io.kubernetes.cri.image-name": config.image,
        "io.kubernetes.cri.sandbox-id": pod.sandbox_id,
        "io.kubernetes.cri.sandbox-name": md.name,
        "io.kubernetes.cri.sandbox-namespace": md.namespace,
        "io.kubernetes.cri.sandbox-uid": md.uid,
    }


def exec_process(spec: dict[str, Any], cmd: list[str], tty: bool = False) -> dict[str, Any]:
    """process.json for ``runc exec --process`` / ``crun exec --process``: the container's
    user, env, cwd, capabilities, no_new_privs and LSM labels, running ``cmd``."""
    if not cmd:
        raise InvalidArgument("cmd: empty")
    process = copy.deepcopy(spec["process"])
    process["args"] = list(cmd)
    process["terminal"] = bool(tty)
    process.pop("consoleSize", None)
    env = process.get("env", [])
    if tty and not any(e.startswith("TERM=") for e in env):
        process["env"] = [*env, "TERM=xterm"]
    return process
