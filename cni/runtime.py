"""Per-attachment arguments (libcni's ``RuntimeConf``) and each plugin's stdin.

The runtime side of a call: the container id, netns and interface name, the ``CNI_ARGS`` pairs
that identify the pod, and the capability arguments (``portMappings``, ``bandwidth``, ``dns``)
that reach a plugin in ``runtimeConfig`` only if the plugin declares the capability.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cni.config import valid_name
from cni.errdefs import InvalidArgument
from cni.types import NetworkConfigList, PluginConfig, PodNetwork

_IFNAMSIZ = 16


def validate_ifname(ifname: str) -> None:
    """libcni's interface-name rule: 1..15 bytes, not ``.``/``..``, no ``/``, ``:`` or space."""
    if not ifname:
        raise InvalidArgument("CNI interface name is empty")
    if len(ifname.encode()) > _IFNAMSIZ - 1:
        raise InvalidArgument(f"CNI interface name {ifname!r} is longer than {_IFNAMSIZ - 1}")
    if ifname in (".", "..") or any(c in ifname for c in "/:") or any(c.isspace() for c in ifname):
        raise InvalidArgument(f"invalid CNI interface name {ifname!r}")


def validate_container_id(container_id: str) -> None:
    if not valid_name(container_id):
        raise InvalidArgument(f"invalid sandbox id {container_id!r} for CNI")


def pod_cni_args(pod: PodNetwork) -> list[tuple[str, str]]:
    return [
        ("IgnoreUnknown", "1"),
        ("K8S_POD_NAMESPACE", pod.pod_namespace),
        ("K8S_POD_NAME", pod.pod_name),
        ("K8S_POD_INFRA_CONTAINER_ID", pod.sandbox_id),
        ("K8S_POD_UID", pod.pod_uid),
    ]


def format_cni_args(pairs: list[tuple[str, str]]) -> str:
    return ";".join(f"{k}={v}" for k, v in pairs)


def pod_capability_args(pod: PodNetwork) -> dict[str, Any]:
    """Capability arguments in the JSON shapes the reference plugins expect.

    Port mappings without a host port are only declarations and are left out (as CRI-O does);
    keys without data are omitted altogether.
    """
    args: dict[str, Any] = {}
    ports = [
        {"hostPort": p.host_port, "containerPort": p.container_port,
         "protocol": p.protocol.lower(), "hostIP": p.host_ip}
        for p in pod.port_mappings if p.host_port > 0
    ]
    if ports:
        args["portMappings"] = ports
    if pod.bandwidth is not None:
        bw = pod.bandwidth
        args["bandwidth"] = {"ingressRate": bw.ingress_rate, "ingressBurst": bw.ingress_burst,
                             "egressRate": bw.egress_rate, "egressBurst": bw.egress_burst}
    if pod.dns is not None:
        args["dns"] = {"servers": list(pod.dns.servers), "searches": list(pod.dns.searches),
                       "options": list(pod.dns.options)}
    return args


@dataclass(frozen=True)
class RuntimeConf:
    container_id: str
    netns: str
    ifname: str
    cni_args: list[tuple[str, str]] = field(default_factory=list)
    capability_args: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def for_pod(cls, pod: PodNetwork) -> RuntimeConf:
        validate_container_id(pod.sandbox_id)
        validate_ifname(pod.ifname)
        return cls(container_id=pod.sandbox_id, netns=pod.netns_path, ifname=pod.ifname,
                   cni_args=pod_cni_args(pod), capability_args=pod_capability_args(pod))


def runtime_config(plugin: PluginConfig, capability_args: Mapping[str, Any]) -> dict[str, Any]:
    """The capability arguments this plugin asked for, and only those."""
    return {cap: capability_args[cap] for cap in sorted(plugin.capabilities)
            if cap in capability_args}


def plugin_stdin(net: NetworkConfigList, plugin: PluginConfig,
                 prev_result: Mapping[str, Any] | None = None,
                 capability_args: Mapping[str, Any] | None = None) -> bytes:
    """The plugin's JSON with the list's ``name``/``cniVersion``, ``prevResult`` and
    ``runtimeConfig`` injected (an injected ``runtimeConfig`` replaces one in the file)."""
    conf = dict(plugin.raw)
    conf["name"] = net.name
    conf["cniVersion"] = net.cni_version
    if prev_result is not None:
        conf["prevResult"] = prev_result
    if capability_args is not None:
        rc = runtime_config(plugin, capability_args)
        if rc:
            conf["runtimeConfig"] = rc
    return json.dumps(conf, separators=(",", ":")).encode()
