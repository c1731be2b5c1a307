"""containers-registries.conf(5): short-name resolution here, the rest rendered for skopeo.

Tether resolves short names itself (aliases, then ``unqualified-search-registries``, docker.io
when the file does not say) because skopeo's ``docker://`` transport always assumes docker.io.
Mirrors, insecure and blocked registries are left to skopeo: :func:`render` writes the
operator's file back out with Tether's own ``[images] mirrors`` and ``insecure_registries``
merged in, and skopeo reads that with ``--registries-conf``. Version 1 files
(``[registries.search]`` ...) are converted to version 2 on the way.
"""

from __future__ import annotations

import copy
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import tomli_w

from shim.images.reference import DEFAULT_DOMAIN, InvalidReference, ParsedName, Reference, parse

SHORT_NAME_MODES = ("enforcing", "permissive", "disabled")


class RegistriesConfError(ValueError):
    """The registries.conf file cannot be used; the message names the file."""


@dataclass(frozen=True)
class RegistriesConf:
    # None: the file does not set it, and Kubernetes' expectation (docker.io) applies.
    search: tuple[str, ...] | None = None
    aliases: Mapping[str, str] = field(default_factory=dict)
    short_name_mode: str = "enforcing"
    # The v2 document as loaded (v1 converted), what render() starts from.
    doc: Mapping[str, Any] = field(default_factory=dict)
    path: str = ""

    @property
    def search_registries(self) -> tuple[str, ...]:
        return self.search if self.search is not None else (DEFAULT_DOMAIN,)


def _v1_to_v2(doc: dict[str, Any]) -> dict[str, Any]:
    v1 = doc.pop("registries", None)
    if not isinstance(v1, Mapping):
        return doc
    if "registry" in doc or "unqualified-search-registries" in doc:
        raise RegistriesConfError("mixes version 1 [registries.*] and version 2 tables")

    def hosts(kind: str) -> list[str]:
        table = v1.get(kind, {})
        return list(table.get("registries", [])) if isinstance(table, Mapping) else []

    entries: dict[str, dict[str, Any]] = {}
    for host in hosts("insecure"):
        entries.setdefault(host, {"location": host})["insecure"] = True
    for host in hosts("block"):
        entries.setdefault(host, {"location": host})["blocked"] = True
    if entries:
        doc["registry"] = list(entries.values())
    search = hosts("search")
    if search:
        doc["unqualified-search-registries"] = search
    return doc


def parse_text(text: str, path: str = "<registries.conf>") -> RegistriesConf:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RegistriesConfError(f"{path}: not valid TOML: {e}") from e
    try:
        doc = _v1_to_v2(doc)
    except RegistriesConfError as e:
        raise RegistriesConfError(f"{path}: {e}") from e
    search = doc.get("unqualified-search-registries")
    if search is not None and (
        not isinstance(search, list) or not all(isinstance(s, str) for s in search)
    ):
        raise RegistriesConfError(f"{path}: unqualified-search-registries must be a string list")
    aliases = doc.get("aliases", {})
    if not isinstance(aliases, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()
    ):
        raise RegistriesConfError(f"{path}: [aliases] must map short names to strings")
    for short, target in aliases.items():
        try:
            parsed = parse(target)
        except InvalidReference as e:
            raise RegistriesConfError(f"{path}: alias {short!r}: {e}") from e
        if parsed.digest or ":" in target.rsplit("/", 1)[-1]:
            raise RegistriesConfError(f"{path}: alias {short!r}: value may not have tag/digest")
    mode = doc.get("short-name-mode", "enforcing") or "enforcing"
    if mode not in SHORT_NAME_MODES:
        raise RegistriesConfError(
            f"{path}: short-name-mode must be one of {', '.join(SHORT_NAME_MODES)}"
        )
    registries = doc.get("registry", [])
    if not isinstance(registries, list) or not all(isinstance(r, Mapping) for r in registries):
        raise RegistriesConfError(f"{path}: [[registry]] must be an array of tables")
    return RegistriesConf(
        search=tuple(search) if search is not None else None,
        aliases=dict(aliases),
        short_name_mode=mode,
        doc=doc,
        path=path,
    )


def load(path: str) -> RegistriesConf:
    """The file at ``path``; ``""`` gives the built-in defaults (search docker.io only)."""
    if not path:
        return RegistriesConf()
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise RegistriesConfError(f"{path}: cannot read: {e.strerror}") from e
    return parse_text(text, path)


def candidates(conf: RegistriesConf, parsed: ParsedName) -> list[Reference]:
    """Where to look for an image, in order: the name itself, its alias or search registries."""
    if not parsed.short:
        assert parsed.domain is not None
        return [parsed.qualify(parsed.domain)]
    alias = conf.aliases.get(parsed.path)
    if alias is not None:
        target = parse(alias)
        tag = parsed.tag if (parsed.tag or parsed.digest) else "latest"
        return [Reference(target.domain, target.path, tag, parsed.digest)]
    return [parsed.qualify(host) for host in conf.search_registries]


def _find_entry(entries: list[dict[str, Any]], host: str) -> dict[str, Any] | None:
    for e in entries:
        if (e.get("prefix") or e.get("location")) == host:
            return e
    return None


def render(
    conf: RegistriesConf,
    mirrors: Mapping[str, Sequence[str]] | None = None,
    insecure: Sequence[str] = (),
) -> str:
    """The v2 file skopeo reads: the operator's entries with Tether's mirrors/insecure merged.

    Tether's mirrors come first, in the configured order, before mirrors the file had.
    """
    doc = copy.deepcopy(dict(conf.doc))
    entries: list[dict[str, Any]] = [dict(e) for e in doc.get("registry", [])]
    insecure_set = set(insecure)

    def entry(host: str) -> dict[str, Any]:
        found = _find_entry(entries, host)
        if found is None:
            found = {"location": host}
            entries.append(found)
        return found

    for host in insecure:
        entry(host)["insecure"] = True
    for host, hosts in (mirrors or {}).items():
        e = entry(host)
        existing = [dict(m) for m in e.get("mirror", [])]
        ours = [{"location": m, "insecure": m in insecure_set} for m in hosts]
        known = {m["location"] for m in ours}
        e["mirror"] = ours + [m for m in existing if m.get("location") not in known]
    for e in entries:
        for m in e.get("mirror", []):
            if m.get("location") in insecure_set:
                m["insecure"] = True
    if entries:
        doc["registry"] = entries
    # skopeo never sees short names from us; keep the search list so its own view matches.
    doc["unqualified-search-registries"] = list(conf.search_registries)
    doc.pop("aliases", None)
    return "# generated by tether from its [images] config" + (
        f" and {conf.path}" if conf.path else ""
    ) + "\n" + tomli_w.dumps(doc)


def write_rendered(path: str, text: str) -> None:
    """Replace ``path`` atomically (skopeo may be reading the old one)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
