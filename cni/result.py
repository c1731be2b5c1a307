"""CNI results: decoding a plugin's ADD output, converting between versions, parsing into types.

Result formats handled: 0.3.0/0.3.1/0.4.0 (``ips[].version`` present) and 1.0.0/1.1.0 (no
``version``). ``ips[].interface`` is an index into ``interfaces``.
"""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import json
from collections.abc import Mapping
from typing import Any

from cni import version
from cni.types import InterfaceInfo, IPConfig, NetworkResult


class ResultInvalid(ValueError):
    """A result that is not a CNI result of a version we know."""


def decode_output(stdout: bytes, conf_version: str) -> dict[str, Any]:
    """The ADD result object; an empty ``cniVersion`` is taken to be the config's (as libcni)."""
    try:
        obj = json.loads(stdout) if stdout.strip() else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ResultInvalid(f"result is not JSON: {exc}") from None
    if obj is None:
        obj = {}
    if not isinstance(obj, dict):
        raise ResultInvalid("result is not a JSON object")
    if not obj.get("cniVersion"):
        obj["cniVersion"] = conf_version
    return obj


def convert(raw: Mapping[str, Any], target: str) -> dict[str, Any]:
    """``raw`` as a result of version ``target`` (for prevResult from the cache)."""
    out = copy.deepcopy(dict(raw))
    source = str(out.get("cniVersion") or target)
    try:
        src_new, dst_new = version.at_least(source, "1.0.0"), version.at_least(target, "1.0.0")
    except ValueError as exc:
        raise ResultInvalid(str(exc)) from None
    ips = out.get("ips")
    if isinstance(ips, list) and src_new != dst_new:
        for ip in ips:
            if not isinstance(ip, dict):
                continue
            if dst_new:
                ip.pop("version", None)
            elif isinstance(ip.get("address"), str):
                with contextlib.suppress(ValueError):
                    ip["version"] = str(ipaddress.ip_interface(ip["address"]).version)
    out["cniVersion"] = target
    return out


def _ip(entry: Any, n_interfaces: int) -> IPConfig:
    if not isinstance(entry, dict):
        raise ResultInvalid("ips entry is not an object")
    try:
        address = ipaddress.ip_interface(entry["address"])
    except (KeyError, TypeError, ValueError):
        raise ResultInvalid(f"invalid ips address {entry.get('address')!r}") from None
    gateway = None
    if entry.get("gateway"):
        try:
            gateway = ipaddress.ip_address(entry["gateway"])
        except (TypeError, ValueError):
            raise ResultInvalid(f"invalid ips gateway {entry['gateway']!r}") from None
    iface = entry.get("interface")
    if iface is not None and (not isinstance(iface, int) or isinstance(iface, bool)
                              or not 0 <= iface < n_interfaces):
        raise ResultInvalid(f"ips interface index {iface!r} out of range")
    return IPConfig(address=address, gateway=gateway, interface=iface)


def _interface(entry: Any) -> InterfaceInfo:
    if not isinstance(entry, dict) or not isinstance(entry.get("name", ""), str):
        raise ResultInvalid("interfaces entry is not an object with a name")
    return InterfaceInfo(name=entry.get("name", ""), mac=str(entry.get("mac", "") or ""),
                         sandbox=str(entry.get("sandbox", "") or ""))


def parse(network_name: str, raw: Mapping[str, Any]) -> NetworkResult:
    cni_version = raw.get("cniVersion")
    if not isinstance(cni_version, str) or not version.is_supported(cni_version):
        raise ResultInvalid(f"unsupported result cniVersion {cni_version!r}")
    interfaces = raw.get("interfaces") or []
    ips = raw.get("ips") or []
    if not isinstance(interfaces, list) or not isinstance(ips, list):
        raise ResultInvalid("'interfaces' and 'ips' must be lists")
    ifaces = tuple(_interface(i) for i in interfaces)
    return NetworkResult(
        network_name=network_name,
        cni_version=cni_version,
        ips=tuple(_ip(i, len(ifaces)) for i in ips),
        raw=raw,
        interfaces=ifaces,
    )
