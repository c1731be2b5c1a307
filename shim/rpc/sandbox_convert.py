"""CRI messages <-> the sandbox layer's types: validation of RunPodSandbox input, and the
PodSandbox / PodSandboxStatus views of a record. Pure functions."""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

from cni.types import Bandwidth, DNSConfig, PortMapping
from podsandbox.types import (
    IDMapping,
    Mode,
    NamespaceModes,
    PodStatus,
    SandboxSpec,
    State,
    UserNamespace,
)
from podsandbox.userns import ID_LIMIT, MIN_IDS
from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.store import SandboxRecord

_PROTOCOLS = {pb.TCP: "tcp", pb.UDP: "udp", pb.SCTP: "sctp"}
_MODE = {pb.POD: Mode.POD, pb.CONTAINER: Mode.CONTAINER, pb.NODE: Mode.NODE}
_MODE_PB = {Mode.POD: pb.POD, Mode.CONTAINER: pb.CONTAINER, Mode.NODE: pb.NODE}
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,62})$")
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_SUFFIX = {
    None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}
# The bandwidth plugin takes rates in bit/s as 64-bit numbers; the kubelet caps at 1 Pbit/s.
MAX_BANDWIDTH = 10**15
# resolv.conf: one DNS name per search entry (RFC 1123 labels), options as "name[:value]".
_DNS_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*\.?$")
_DNS_OPTION = re.compile(r"^[A-Za-z0-9_-]{1,64}(:[A-Za-z0-9_.-]{1,64})?$")
NSO = "config.linux.security_context.namespace_options"
# A user namespace for a pod whose kubelet cannot ask for one (userns_options came with
# Kubernetes 1.25): Tether picks the ids (the userns section of its config).
USERNS_ANNOTATION = "io.tether.userns-mode"
INGRESS_ANNOTATION = "kubernetes.io/ingress-bandwidth"
EGRESS_ANNOTATION = "kubernetes.io/egress-bandwidth"


def parse_quantity(text: str, field: str) -> int:
    """A Kubernetes quantity (``10M``, ``1Gi``) as an integer."""
    m = _QUANTITY.fullmatch(text.strip())
    if not m:
        raise InvalidArgument(f"{field}: {text[:64]!r} is not a quantity such as '10M'")
    value = int(float(m.group(1)) * _SUFFIX[m.group(2)])
    if not 0 < value <= MAX_BANDWIDTH:
        raise InvalidArgument(f"{field}: {text[:64]!r} is out of range (1 bit/s to 1P)")
    return value


def bandwidth(annotations: dict[str, str]) -> Bandwidth | None:
    ingress = annotations.get(INGRESS_ANNOTATION)
    egress = annotations.get(EGRESS_ANNOTATION)
    if ingress is None and egress is None:
        return None
    ing = parse_quantity(ingress, f"annotations[{INGRESS_ANNOTATION!r}]") if ingress else 0
    eg = parse_quantity(egress, f"annotations[{EGRESS_ANNOTATION!r}]") if egress else 0
    # The bandwidth plugin wants rates in bit/s and bursts in bits; kubelet's default burst.
    burst = 2**31 - 1
    return Bandwidth(
        ingress_rate=ing, ingress_burst=burst if ing else 0,
        egress_rate=eg, egress_burst=burst if eg else 0,
    )


def _modes(opts: pb.NamespaceOption, user: Mode) -> NamespaceModes:
    field = NSO
    if opts.network not in (pb.POD, pb.NODE):
        raise InvalidArgument(f"{field}.network: must be POD or NODE")
    if opts.ipc not in (pb.POD, pb.NODE):
        raise InvalidArgument(f"{field}.ipc: must be POD or NODE")
    if opts.pid not in (pb.POD, pb.CONTAINER, pb.NODE):
        raise InvalidArgument(f"{field}.pid: must be POD, CONTAINER or NODE for a pod")
    modes = NamespaceModes(network=_MODE[opts.network], pid=_MODE[opts.pid],
                           ipc=_MODE[opts.ipc], user=user)
    if user is Mode.POD:
        # as the API server's validation of hostUsers: false: the node's namespaces belong
        # to the node's user namespace, out of reach of the pod's
        for name, mode in (("network", modes.network), ("pid", modes.pid), ("ipc", modes.ipc)):
            if mode is Mode.NODE:
                raise InvalidArgument(f"{field}.{name}: NODE cannot go with a user namespace "
                                      "of the pod's own (userns_options POD)")
    return modes


def _mapping(maps: Any, field: str) -> tuple[IDMapping, ...]:
    """One range, that maps the pod's root and not the node's (the kubelet sends one)."""
    if len(maps) != 1:
        raise InvalidArgument(f"{field}: exactly one mapping is supported (got {len(maps)})")
    m = maps[0]
    if m.container_id != 0:
        raise InvalidArgument(f"{field}[0].container_id: {m.container_id}: must be 0 (the "
                              "pod's root must be mapped)")
    if m.host_id == 0:
        raise InvalidArgument(f"{field}[0].host_id: 0 would make the pod's root the node's")
    if m.host_id + m.length > ID_LIMIT:
        raise InvalidArgument(f"{field}[0]: host ids {m.host_id}..{m.host_id + m.length - 1} "
                              f"go past the largest id ({ID_LIMIT - 1})")
    if m.length < MIN_IDS:
        # fewer, and a container cannot even start: the runtime mounts /dev/pts with gid 5
        raise InvalidArgument(f"{field}[0].length: {m.length}: must be at least {MIN_IDS} "
                              "(the ids images and runtimes use, up to nobody, 65534)")
    return (IDMapping(m.container_id, m.host_id, m.length),)


def _userns(opts: pb.NamespaceOption, annotations: dict[str, str]
            ) -> tuple[Mode, UserNamespace | None, bool]:
    """(the user namespace mode, the kubelet's mappings, whether Tether is to allocate)."""
    field = f"{NSO}.userns_options"
    asked = annotations.get(USERNS_ANNOTATION)
    if asked is not None and asked != "auto":
        raise InvalidArgument(f"config.annotations[{USERNS_ANNOTATION!r}]: {asked[:64]!r}: "
                              "only 'auto' is understood")
    if not opts.HasField("userns_options"):
        return (Mode.POD, None, True) if asked else (Mode.NODE, None, False)
    u = opts.userns_options
    if u.mode == pb.NODE:
        if u.uids or u.gids:
            raise InvalidArgument(f"{field}: mappings need mode POD (mode is NODE)")
        return Mode.NODE, None, False
    if u.mode != pb.POD:
        name = pb.NamespaceMode.Name(u.mode) if u.mode in (pb.CONTAINER, pb.TARGET) \
            else str(u.mode)
        raise InvalidArgument(f"{field}.mode: {name}: a pod's user namespace is its own (POD) "
                              "or the node's (NODE)")
    return Mode.POD, UserNamespace(_mapping(u.uids, f"{field}.uids"),
                                   _mapping(u.gids, f"{field}.gids")), False


def spec_from_request(req: pb.RunPodSandboxRequest, default_handler: str) -> SandboxSpec:
    if not req.HasField("config"):
        raise InvalidArgument("config: required")
    cfg = req.config
    md = cfg.metadata
    for name in ("name", "namespace", "uid"):
        if not getattr(md, name):
            raise InvalidArgument(f"config.metadata.{name}: required")
    if cfg.hostname and not _HOSTNAME.fullmatch(cfg.hostname):
        raise InvalidArgument(f"config.hostname: {cfg.hostname!r} is not a valid hostname")
    nso = cfg.linux.security_context.namespace_options
    annotations = dict(cfg.annotations)
    user_mode, userns, userns_auto = _userns(nso, annotations)
    modes = _modes(nso, user_mode)
    ports = []
    taken: dict[tuple[str, str, int], int] = {}
    for i, p in enumerate(cfg.port_mappings):
        field = f"config.port_mappings[{i}]"
        if p.protocol not in _PROTOCOLS:
            raise InvalidArgument(f"{field}.protocol: unknown value {p.protocol}")
        if not 0 < p.container_port < 65536:
            raise InvalidArgument(f"{field}.container_port: {p.container_port} out of range")
        if not 0 <= p.host_port < 65536:
            raise InvalidArgument(f"{field}.host_port: {p.host_port} out of range")
        if p.host_ip:
            try:
                ipaddress.ip_address(p.host_ip)
            except ValueError:
                raise InvalidArgument(f"{field}.host_ip: {p.host_ip!r} is not an IP") from None
        if p.host_port:
            key = (p.host_ip, _PROTOCOLS[p.protocol], p.host_port)
            if key in taken:
                raise InvalidArgument(
                    f"{field}.host_port: {p.host_port}/{key[1]} is already mapped by "
                    f"config.port_mappings[{taken[key]}]")
            taken[key] = i
        ports.append(PortMapping(p.container_port, p.host_port, _PROTOCOLS[p.protocol],
                                 p.host_ip))
    dns = None
    if cfg.HasField("dns_config"):
        for i, s in enumerate(cfg.dns_config.servers):
            try:
                ipaddress.ip_address(s)
            except ValueError:
                raise InvalidArgument(
                    f"config.dns_config.servers[{i}]: {s[:64]!r} is not an IP address") from None
        # a newline would add lines of the client's to the pod's resolv.conf
        for i, s in enumerate(cfg.dns_config.searches):
            if not _DNS_NAME.fullmatch(s):
                raise InvalidArgument(
                    f"config.dns_config.searches[{i}]: {s[:64]!r} is not a DNS name")
        for i, s in enumerate(cfg.dns_config.options):
            if not _DNS_OPTION.fullmatch(s):
                raise InvalidArgument(
                    f"config.dns_config.options[{i}]: {s[:64]!r} is not a resolv.conf option")
        dns = DNSConfig(tuple(cfg.dns_config.servers), tuple(cfg.dns_config.searches),
                        tuple(cfg.dns_config.options))
    if cfg.log_directory and (not cfg.log_directory.startswith("/") or
                              ".." in cfg.log_directory.split("/") or "\0" in cfg.log_directory):
        raise InvalidArgument(f"config.log_directory: {cfg.log_directory[:128]!r} must be an "
                              "absolute path without '..'")
    return SandboxSpec(
        name=md.name,
        namespace=md.namespace,
        uid=md.uid,
        attempt=md.attempt,
        hostname=cfg.hostname,
        log_directory=cfg.log_directory,
        runtime_handler=req.runtime_handler or default_handler,
        modes=modes,
        cgroup_parent=cfg.linux.cgroup_parent,
        sysctls=tuple(sorted(cfg.linux.sysctls.items())),
        dns=dns,
        port_mappings=tuple(ports),
        bandwidth=bandwidth(annotations),
        labels=dict(cfg.labels),
        annotations=annotations,
        privileged=cfg.linux.security_context.privileged,
        userns=userns,
        userns_auto=userns_auto,
    )


def _state(rec: SandboxRecord) -> pb.PodSandboxState:
    return pb.SANDBOX_READY if rec.state is State.READY else pb.SANDBOX_NOTREADY


def _metadata(rec: SandboxRecord) -> pb.PodSandboxMetadata:
    return pb.PodSandboxMetadata(name=rec.name, namespace=rec.namespace, uid=rec.uid,
                                 attempt=rec.attempt)


def to_pod_sandbox(rec: SandboxRecord) -> pb.PodSandbox:
    return pb.PodSandbox(
        id=rec.id, metadata=_metadata(rec), state=_state(rec), created_at=rec.created_at,
        labels=rec.labels, annotations=rec.annotations, runtime_handler=rec.runtime_handler,
    )


def to_status(rec: SandboxRecord, view: PodStatus) -> pb.PodSandboxStatus:
    """``view``: the sandbox manager's ``status_view`` of ``rec``."""
    network = pb.PodSandboxNetworkStatus()
    if view.ips and rec.state is State.READY:
        network.ip = view.ips[0]
        network.additional_ips.extend(pb.PodIP(ip=ip) for ip in view.ips[1:])
    m = view.modes
    options = pb.NamespaceOption(network=_MODE_PB[m.network], pid=_MODE_PB[m.pid],
                                 ipc=_MODE_PB[m.ipc])
    user_ns = view.userns
    if user_ns is not None:
        options.userns_options.mode = pb.POD
        options.userns_options.uids.extend(_pb_mappings(user_ns.uids))
        options.userns_options.gids.extend(_pb_mappings(user_ns.gids))
    return pb.PodSandboxStatus(
        id=rec.id, metadata=_metadata(rec), state=_state(rec), created_at=rec.created_at,
        network=network,
        linux=pb.LinuxPodSandboxStatus(namespaces=pb.Namespace(options=options)),
        labels=rec.labels, annotations=rec.annotations, runtime_handler=rec.runtime_handler,
    )


def _pb_mappings(maps: tuple[IDMapping, ...]) -> list[pb.IDMapping]:
    return [pb.IDMapping(container_id=m.container_id, host_id=m.host_id, length=m.length)
            for m in maps]


def verbose_info(rec: SandboxRecord, view: PodStatus,
                 node_inodes: dict[str, int]) -> dict[str, str]:
    ns: dict[str, Any] = {}
    for n in view.namespaces:
        entry: dict[str, Any] = {"mode": n.mode.value}
        if n.path:
            entry.update(path=n.path, inode=n.inode)
        elif n.mode is Mode.NODE:
            entry.update(path=f"/proc/self/ns/{n.kind}", inode=node_inodes.get(n.kind))
        ns[n.kind] = entry
    if view.userns:
        u = view.userns.to_dict()
        ns["user"].update(uidMappings=u["uids"], gidMappings=u["gids"], allocated=u["auto"])
    info = {
        "id": rec.id,
        "state": rec.state.value,
        "pid": view.holder.pid if view.holder else 0,
        "launcherPid": view.launcher.pid if view.launcher else 0,
        "namespaces": ns,
        "cgroup": view.cgroup,
        "sandboxDir": view.sandbox_dir,
        "shm": view.shm_path,
        "hostname": view.hostname,
        "ips": list(view.ips),
        "cniNetwork": view.cni_network,
        "cniResult": view.cni_result,
        "runtimeHandler": rec.runtime_handler,
        # what `tether ns check` weighs: host ports and privilege, beside the namespaces
        "portMappings": [vars(p) for p in view.port_mappings],
        "privileged": view.privileged,
    }
    return {"info": json.dumps(info, sort_keys=True)}


def matches(rec: SandboxRecord, f: pb.PodSandboxFilter | pb.PodSandboxStatsFilter | None) -> bool:
    """ListPodSandbox's filter, and ListPodSandboxStats' (the same without a state)."""
    if f is None:
        return True
    if f.id and not rec.id.startswith(f.id):
        return False
    if isinstance(f, pb.PodSandboxFilter) and f.HasField("state") and _state(rec) != f.state.state:
        return False
    return all(rec.labels.get(k) == v for k, v in f.label_selector.items())
