"""Loading CNI network configurations from a directory, the way libcni and CRI-O do.

``*.conflist``, ``*.conf`` and ``*.json`` files are read in lexical order; a single-plugin
``.conf``/``.json`` is wrapped into a list. The first file that parses, names a supported
cniVersion and whose plugin binaries all exist is the pod network; the others are reported with
the reason they were skipped.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cni import version
from cni.errdefs import TetherError
from cni.invoke import find_plugin
from cni.types import NetworkConfigList, PluginConfig

CONF_EXTENSIONS = (".conflist", ".conf", ".json")
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")


class ConfigInvalid(ValueError):
    """A configuration that cannot be used; the message says why."""


def valid_name(name: str) -> bool:
    """libcni's rule for network names and container ids."""
    return bool(_NAME_RE.match(name))


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigInvalid(f"error parsing {what}: {exc}") from None
    if not isinstance(obj, dict):
        raise ConfigInvalid(f"error parsing {what}: not a JSON object")
    return obj


def _read_bool(obj: Mapping[str, Any], key: str) -> bool:
    value = obj.get(key, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigInvalid(f"invalid value {value!r} for {key}")


def _pick_version(obj: Mapping[str, Any]) -> str:
    """cniVersion, or with a ``cniVersions`` list the highest entry we implement (spec 1.1)."""
    declared = obj.get("cniVersion", "")
    if not isinstance(declared, str):
        raise ConfigInvalid(f"invalid cniVersion type {type(declared).__name__}")
    candidates = obj.get("cniVersions")
    if candidates is None:
        chosen = declared
    else:
        if not isinstance(candidates, list) or not all(isinstance(v, str) for v in candidates):
            raise ConfigInvalid("invalid cniVersions: not a list of strings")
        usable = []
        for v in [*candidates, *([declared] if declared else [])]:
            try:
                if version.parse(v) <= version.parse(version.CURRENT):
                    usable.append(v)
            except ValueError:
                raise ConfigInvalid(f"invalid cniVersions entry {v!r}") from None
        chosen = max(usable, key=version.parse) if usable else declared
    if not chosen:
        raise ConfigInvalid("missing cniVersion")
    if not version.is_supported(chosen):
        supported = ", ".join(version.SUPPORTED_VERSIONS)
        raise ConfigInvalid(f"unsupported cniVersion {chosen!r} (supported: {supported})")
    return chosen


def _plugin(raw: Any, index: int) -> PluginConfig:
    if not isinstance(raw, dict):
        raise ConfigInvalid(f"plugin {index}: not a JSON object")
    ptype = raw.get("type")
    if not isinstance(ptype, str) or not ptype:
        raise ConfigInvalid(f"plugin {index}: missing 'type'")
    if "/" in ptype or ptype in (".", ".."):
        raise ConfigInvalid(f"plugin {index}: invalid type {ptype!r}")
    caps = raw.get("capabilities", {})
    if not isinstance(caps, dict):
        raise ConfigInvalid(f"plugin {index} ({ptype}): 'capabilities' is not an object")
    enabled = frozenset(k for k, v in caps.items() if v is True)
    return PluginConfig(type=ptype, raw=raw, capabilities=enabled)


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigInvalid("missing network name")
    if not valid_name(name):
        raise ConfigInvalid(f"invalid network name {name!r}")
    return name


def parse_conflist(data: bytes, source: str = "") -> NetworkConfigList:
    """A ``.conflist``: ``{"name", "cniVersion", "plugins": [...], "disableCheck"}``."""
    obj = _json_object(data, "configuration list")
    name = _check_name(obj.get("name"))
    cni_version = _pick_version(obj)
    plugins = obj.get("plugins")
    if not isinstance(plugins, list) or not plugins:
        raise ConfigInvalid("no plugins in list")
    return NetworkConfigList(
        name=name,
        cni_version=cni_version,
        plugins=tuple(_plugin(p, i) for i, p in enumerate(plugins)),
        bytes=data,
        disable_check=_read_bool(obj, "disableCheck"),
        source=source,
    )


def parse_single_conf(data: bytes, source: str = "") -> NetworkConfigList:
    """A legacy single-plugin ``.conf``/``.json``, up-converted to a one-plugin list."""
    obj = _json_object(data, "configuration")
    name = _check_name(obj.get("name"))
    cni_version = obj.get("cniVersion", "")
    if not isinstance(cni_version, str):
        raise ConfigInvalid(f"invalid cniVersion type {type(cni_version).__name__}")
    # libcni re-encodes {name, cniVersion, plugins: [conf]}; those bytes are what it caches.
    wrapped = json.dumps({"cniVersion": cni_version, "name": name, "plugins": [obj]},
                         separators=(",", ":"), sort_keys=True).encode()
    return parse_conflist(wrapped, source)


def parse_file(path: str) -> NetworkConfigList:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ConfigInvalid(f"error reading {path}: {exc.strerror}") from None
    if path.endswith(".conflist"):
        return parse_conflist(data, path)
    return parse_single_conf(data, path)


def conf_files(conf_dir: str) -> list[str]:
    """Config files in ``conf_dir`` in lexical order; [] when the directory does not exist."""
    try:
        entries = list(os.scandir(conf_dir))
    except FileNotFoundError:
        return []
    names = [e.name for e in entries
             if os.path.splitext(e.name)[1] in CONF_EXTENSIONS and not e.is_dir()]
    return [os.path.join(conf_dir, n) for n in sorted(names)]


def check_plugins(net: NetworkConfigList, plugin_dirs: Sequence[str]) -> None:
    """Every plugin binary of the list must exist (CRI-O validates the list the same way)."""
    for plugin in net.plugins:
        try:
            find_plugin(plugin.type, plugin_dirs)
        except TetherError as exc:
            raise ConfigInvalid(exc.message) from None


@dataclass(frozen=True)
class LoadResult:
    network: NetworkConfigList | None
    # (file, reason) for every file skipped before the chosen one (or all, when none was usable).
    skipped: tuple[tuple[str, str], ...] = ()


def load_default_network(conf_dir: str, plugin_dirs: Sequence[str]) -> LoadResult:
    skipped: list[tuple[str, str]] = []
    for path in conf_files(conf_dir):
        try:
            net = parse_file(path)
            check_plugins(net, plugin_dirs)
        except ConfigInvalid as exc:
            skipped.append((path, str(exc)))
            continue
        return LoadResult(net, tuple(skipped))
    return LoadResult(None, tuple(skipped))
