"""containers-registries.conf(5): loading, and short-name resolution.

Tether pulls with its own registry client, so it reads the operator's file itself. This module
loads it (version 1 files, ``[registries.search]`` ..., are converted to version 2) and resolves
short names (aliases, then ``unqualified-search-registries``, docker.io when the file does not
say). The ``[[registry]]`` tables — prefixes, locations, mirrors, insecure and blocked — are
interpreted by :mod:`shim.images.endpoints`, which :func:`parse_text` also uses to validate
them, so a bad file fails when it is loaded.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from typing import Any

from shim.images import endpoints
from shim.images.reference import InvalidReference, ParsedName, Reference, parse
from shim.images.regconf import RegistriesConf, RegistriesConfError

SHORT_NAME_MODES = ("enforcing", "permissive", "disabled")


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


def _toml(text: str, path: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RegistriesConfError(f"{path}: not valid TOML: {e}") from e


def _main_doc(text: str, path: str) -> dict[str, Any]:
    """The main file as a v2 document (a v1 file is converted)."""
    doc = _toml(text, path)
    try:
        return _v1_to_v2(doc)
    except RegistriesConfError as e:
        raise RegistriesConfError(f"{path}: {e}") from e


def parse_text(text: str, path: str = "<registries.conf>") -> RegistriesConf:
    return _from_doc(_main_doc(text, path), path)


def _from_doc(doc: dict[str, Any], path: str) -> RegistriesConf:
    """Check a v2 document and make it a RegistriesConf; errors name ``path``."""
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
    endpoints.validate(conf)
    return conf


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise RegistriesConfError(f"{path}: cannot read: {e.strerror}") from e


def _merge_dropin(doc: dict[str, Any], dropin: dict[str, Any], path: str) -> None:
    """containers-registries.conf.d(5): keys a drop-in sets replace the earlier value;
    ``[[registry]]`` tables replace the one with the same prefix, others are added; aliases
    are merged name by name."""
    if "registries" in dropin:
        raise RegistriesConfError(f"{path}: drop-ins must use the version 2 format")
    for key, value in dropin.items():
        if key == "registry" and isinstance(value, list):
            merged = list(doc.get("registry", []))
            for entry in value:
                if not isinstance(entry, Mapping):
                    raise RegistriesConfError(f"{path}: [[registry]] must be an array of tables")
                key_of = entry.get("prefix") or entry.get("location")
                merged = [e for e in merged
                          if not isinstance(e, Mapping)
                          or (e.get("prefix") or e.get("location")) != key_of]
                merged.append(dict(entry))
            doc["registry"] = merged
        elif key == "aliases" and isinstance(value, Mapping) and isinstance(
                doc.get("aliases"), Mapping):
            doc["aliases"] = {**doc["aliases"], **value}
        else:
            doc[key] = value


def load(path: str, dropin_dir: str = "") -> RegistriesConf:
    """The file at ``path`` and then the ``*.conf`` files of ``dropin_dir`` in lexical order;
    ``""`` for both gives the built-in defaults (search docker.io only)."""
    if not path and not dropin_dir:
        return RegistriesConf()
    doc: dict[str, Any] = {}
    names = [path] if path else []
    if path:
        doc = _main_doc(_read(path), path)
    if dropin_dir:
        try:
            files = sorted(n for n in os.listdir(dropin_dir) if n.endswith(".conf"))
        except FileNotFoundError:
            files = []
        except OSError as e:
            raise RegistriesConfError(f"{dropin_dir}: cannot read: {e.strerror}") from e
        for n in files:
            p = os.path.join(dropin_dir, n)
            if os.path.isfile(p):
                _merge_dropin(doc, _toml(_read(p), p), p)
                names.append(p)
    return _from_doc(doc, " + ".join(names) if names else dropin_dir)


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
