"""containers-registries.conf(5): loading, and short-name resolution.

Tether pulls with its own registry client, so it reads the operator's file itself. This module
loads it (version 1 files, ``[registries.search]`` ..., are converted to version 2) and resolves
short names (aliases, then ``unqualified-search-registries``, docker.io when the file does not
say). The ``[[registry]]`` tables — prefixes, locations, mirrors, insecure and blocked — are
interpreted by :mod:`shim.images.endpoints`, which :func:`parse_text` also uses to validate
them, so a bad file fails when it is loaded.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
    # The v2 document as loaded (v1 converted); endpoints.compile() reads its [[registry]].
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
    conf = RegistriesConf(
        search=tuple(search) if search is not None else None,
        aliases=dict(aliases),
        short_name_mode=mode,
        doc=doc,
        path=path,
    )
    from shim.images import endpoints  # imports this module

    endpoints.validate(conf)
    return conf


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
