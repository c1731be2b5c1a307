"""Value types of the CNI layer: what the sandbox manager passes in and gets back.

All frozen dataclasses. ``NetworkConfigList``/``PluginConfig`` mirror libcni's structures of the
same names: the parsed view plus the exact bytes (the conflist bytes go into the result cache).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class PortMapping:
    container_port: int
    host_port: int
    protocol: str = "tcp"
    host_ip: str = ""


@dataclass(frozen=True)
class Bandwidth:
    """Traffic shaping for the bandwidth plugin; rates and bursts in bits per second / bits."""

    ingress_rate: int = 0
    ingress_burst: int = 0
    egress_rate: int = 0
    egress_burst: int = 0


@dataclass(frozen=True)
class DNSConfig:
    servers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class PodNetwork:
    """One attachment request: the pod sandbox and its network namespace."""

    sandbox_id: str
    netns_path: str
    pod_name: str
    pod_namespace: str
    pod_uid: str
    port_mappings: tuple[PortMapping, ...] = ()
    bandwidth: Bandwidth | None = None
    dns: DNSConfig | None = None
    ifname: str = "eth0"


@dataclass(frozen=True)
class IPConfig:
    address: IPInterface
    gateway: IPAddress | None
    # Index into the result's ``interfaces`` list (not a kernel ifindex), as in the CNI result.
    interface: int | None


@dataclass(frozen=True)
class InterfaceInfo:
    name: str
    mac: str = ""
    # The netns path for interfaces inside the sandbox; "" for host-side interfaces.
    sandbox: str = ""


@dataclass(frozen=True)
class NetworkResult:
    network_name: str
    cni_version: str
    ips: tuple[IPConfig, ...]
    raw: Mapping[str, Any] = field(compare=False, hash=False)  # the final result JSON
    interfaces: tuple[InterfaceInfo, ...] = ()

    def sandbox_ips(self) -> tuple[IPConfig, ...]:
        """The IPs on interfaces inside the sandbox (and those not tied to an interface)."""
        n = len(self.interfaces)
        return tuple(ip for ip in self.ips
                     if ip.interface is None or not 0 <= ip.interface < n
                     or self.interfaces[ip.interface].sandbox)


@dataclass(frozen=True)
class PluginConfig:
    """One plugin of a network configuration list."""

    type: str
    raw: Mapping[str, Any] = field(compare=False, hash=False)  # the plugin's JSON object
    # Capabilities the plugin declares as enabled (``"capabilities": {"portMappings": true}``).
    capabilities: frozenset[str] = frozenset()


@dataclass(frozen=True)
class NetworkConfigList:
    name: str
    cni_version: str
    plugins: tuple[PluginConfig, ...]
    # The conflist bytes as read (or, for a wrapped single-plugin .conf, as libcni re-encodes it).
    bytes: bytes = field(repr=False)
    disable_check: bool = False
    source: str = ""  # the file it came from, "" when built from bytes
