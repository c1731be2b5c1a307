"""CRI requests -> the sharings the namespace policy decides on (shim.nspolicy), and the
check itself at the edge of RunPodSandbox and CreateContainer: after validation, before any
side effect. The conversions are pure; the inode lookups are passed in."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from podsandbox import namespaces
from podsandbox.types import Mode, NamespaceModes, SandboxSpec
from shim.containers.views import running_pid
from shim.errors import TetherError
from shim.nspolicy.rules import Decision, NamespaceRef, Sharing, Subject
from shim.oci.types import ContainerSpec, PidMode
from shim.rpc.services import Services
from shim.store import SandboxRecord

Inode = Callable[[str], "int | None"]  # namespace type -> the node's inode


def node_inode(ns_type: str) -> int | None:
    """The daemon's own namespace: what NODE mode shares (None: this kernel has no such)."""
    try:
        return namespaces.node_inode(ns_type)
    except OSError:
        return None


def _node(types: tuple[str, ...], inode: Inode) -> dict[str, NamespaceRef]:
    return {t: NamespaceRef("node", inode(t)) for t in types}


def pod_subject(spec: SandboxSpec) -> Subject:
    return Subject(pod_name=spec.name, pod_namespace=spec.namespace, pod_uid=spec.uid,
                   runtime_handler=spec.runtime_handler, labels=spec.labels,
                   annotations=spec.annotations)


def pod_sharings(modes: NamespaceModes, inode: Inode = node_inode) -> list[Sharing]:
    """What a pod asks to share: host network (and so the node's UTS), PID, IPC, user
    namespace (every pod without a user namespace of its own), a pod-wide PID one."""
    out = []
    if modes.network is Mode.NODE:
        out.append(Sharing("host_network", _node(("net", "uts"), inode)))
    if modes.pid is Mode.NODE:
        out.append(Sharing("host_pid", _node(("pid",), inode)))
    if modes.ipc is Mode.NODE:
        out.append(Sharing("host_ipc", _node(("ipc",), inode)))
    if modes.user is Mode.NODE:
        out.append(Sharing("host_user", _node(("user",), inode)))
    if modes.pid is Mode.POD:
        out.append(Sharing("pod_pid", {"pid": NamespaceRef("pod")}))  # made after the check
    return out


def container_subject(pod: SandboxRecord, config: ContainerSpec) -> Subject:
    return Subject(pod_name=pod.name, pod_namespace=pod.namespace, pod_uid=pod.uid,
                   runtime_handler=pod.runtime_handler, labels=pod.labels,
                   annotations=pod.annotations, pod_id=pod.id, container_name=config.name)


def container_sharings(modes: NamespaceModes, config: ContainerSpec,
                       inode: Inode = node_inode,
                       target_inode: Callable[[str], int | None] = lambda _: None
                       ) -> list[Sharing]:
    """What a container gets of the node's or another container's namespaces: net and IPC
    as its pod has them (``modes``: the runtime joins the pod's), PID as its own namespace
    options say; TARGET; and, privileged, any host namespace at all (privileged_host)."""
    sc = config.security
    host: list[tuple[str, tuple[str, ...]]] = []
    if modes.network is Mode.NODE:
        host.append(("host_network", ("net", "uts")))
    if modes.ipc is Mode.NODE:
        host.append(("host_ipc", ("ipc",)))
    if sc.pid is PidMode.NODE or (sc.pid is PidMode.POD and modes.pid is Mode.NODE):
        host.append(("host_pid", ("pid",)))
    out = [Sharing(kind, _node(types, inode)) for kind, types in host]
    if sc.pid is PidMode.TARGET:
        out.append(Sharing("target_pid", {"pid": NamespaceRef(
            "container", target_inode(sc.target_id), container_id=sc.target_id)}))
    if sc.privileged and host:
        types = tuple(t for _, ts in host for t in ts)
        out.append(Sharing("privileged_host", _node(types, inode)))
    return out


def _target_inode(d: Services) -> Callable[[str], int | None]:
    def lookup(target_id: str) -> int | None:
        with contextlib.suppress(TetherError, OSError):
            pid = running_pid(d.containers.get(target_id))
            if pid:
                return os.stat(f"/proc/{pid}/ns/pid").st_ino
        return None

    return lookup


def check_pod(d: Services, spec: SandboxSpec) -> tuple[Subject, list[Decision]]:
    """PermissionDenied for a denied pod; else the decisions to record once it is made."""
    subject = pod_subject(spec)
    if d.nspolicy.cfg.mode == "off":
        return subject, []
    return subject, d.nspolicy.check("RunPodSandbox", subject, pod_sharings(spec.modes))


def check_container(d: Services, sandbox_id: str,
                    config: ContainerSpec) -> tuple[Subject | None, list[Decision]]:
    if d.nspolicy.cfg.mode == "off":
        return None, []
    try:
        pod = d.sandboxes.get(sandbox_id)
    except TetherError:
        return None, []  # CreateContainer itself says NotFound
    subject = container_subject(pod, config)
    sharings = container_sharings(d.sandboxes.status_view(pod).modes, config,
                                  target_inode=_target_inode(d))
    return subject, d.nspolicy.check("CreateContainer", subject, sharings)
