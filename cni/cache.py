"""libcni's on-disk result cache: ``<cache_dir>/results/<network>-<containerID>-<ifName>``.

Same JSON as libcni's ``cachedInfo`` (kind ``cniCacheV1``; ``config`` is the base64 of the
conflist bytes, as Go encodes a ``[]byte``), so tools that read libcni caches read ours.
Writes are atomic (``cni.fileio.atomic_write``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from cni.fileio import TMP_PREFIX, atomic_write

KIND = "cniCacheV1"

log = structlog.get_logger(component="cni")


class CacheCorrupt(ValueError):
    pass


@dataclass(frozen=True)
class CacheEntry:
    container_id: str
    network_name: str
    ifname: str
    config: bytes = field(repr=False)
    netns: str = ""
    cni_args: list[tuple[str, str]] = field(default_factory=list)
    capability_args: Mapping[str, Any] = field(default_factory=dict)
    result: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "kind": KIND,
            "containerId": self.container_id,
            "config": base64.b64encode(self.config).decode(),
            "ifName": self.ifname,
            "networkName": self.network_name,
        }
        # Go's omitempty fields.
        if self.netns:
            doc["netns"] = self.netns
        if self.cni_args:
            doc["cniArgs"] = [[k, v] for k, v in self.cni_args]
        if self.capability_args:
            doc["capabilityArgs"] = dict(self.capability_args)
        if self.result:
            doc["result"] = dict(self.result)
        return doc

    @classmethod
    def from_json(cls, doc: Any) -> CacheEntry:
        if not isinstance(doc, dict) or doc.get("kind") != KIND:
            raise CacheCorrupt("not a cniCacheV1 entry")
        try:
            config = base64.b64decode(doc.get("config") or "", validate=True)
            pairs = [(str(k), str(v)) for k, v in doc.get("cniArgs") or []]
        except (binascii.Error, TypeError, ValueError) as exc:
            raise CacheCorrupt(f"bad field: {exc}") from None
        caps = doc.get("capabilityArgs") or {}
        result = doc.get("result")
        names = (doc.get("containerId"), doc.get("networkName"), doc.get("ifName"))
        if not all(isinstance(n, str) and n for n in names) or not isinstance(caps, dict) \
                or not isinstance(result, dict | None):
            raise CacheCorrupt("missing or mistyped fields")
        return cls(container_id=doc["containerId"], network_name=doc["networkName"],
                   ifname=doc["ifName"], config=config, netns=str(doc.get("netns") or ""),
                   cni_args=pairs, capability_args=caps, result=result)


class ResultCache:
    def __init__(self, cache_dir: str) -> None:
        self.results_dir = os.path.join(cache_dir, "results")

    def path(self, network_name: str, container_id: str, ifname: str) -> str:
        return os.path.join(self.results_dir, f"{network_name}-{container_id}-{ifname}")

    def write(self, entry: CacheEntry) -> None:
        os.makedirs(self.results_dir, mode=0o700, exist_ok=True)
        final = self.path(entry.network_name, entry.container_id, entry.ifname)
        atomic_write(final, json.dumps(entry.to_json(), separators=(",", ":")), 0o600)

    def read(self, network_name: str, container_id: str, ifname: str) -> CacheEntry | None:
        """The entry, or None if there is none. A corrupt entry raises CacheCorrupt."""
        path = self.path(network_name, container_id, ifname)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        try:
            return CacheEntry.from_json(json.loads(data))
        except (ValueError, UnicodeDecodeError) as exc:
            raise CacheCorrupt(f"{path}: {exc}") from None

    def find(self, container_id: str, ifname: str | None = None) -> list[CacheEntry]:
        """All valid entries of a container (optionally one interface), by file name order."""
        try:
            names = sorted(os.listdir(self.results_dir))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            if f"-{container_id}-" not in name or name.startswith(TMP_PREFIX):
                continue
            try:
                with open(os.path.join(self.results_dir, name), "rb") as f:
                    entry = CacheEntry.from_json(json.loads(f.read()))
            except (OSError, ValueError, UnicodeDecodeError):
                continue
            if entry.container_id != container_id or (ifname and entry.ifname != ifname):
                continue
            if name != f"{entry.network_name}-{entry.container_id}-{entry.ifname}":
                continue
            out.append(entry)
        return out

    def container_ids(self) -> set[str]:
        """Container ids that have a valid cache entry (used to find orphans after a crash)."""
        try:
            names = os.listdir(self.results_dir)
        except FileNotFoundError:
            return set()
        ids = set()
        for name in names:
            if name.startswith(TMP_PREFIX):
                continue
            try:
                with open(os.path.join(self.results_dir, name), "rb") as f:
                    ids.add(CacheEntry.from_json(json.loads(f.read())).container_id)
            except (OSError, ValueError, UnicodeDecodeError):
                continue
        return ids

    def remove(self, network_name: str, container_id: str, ifname: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(network_name, container_id, ifname))
