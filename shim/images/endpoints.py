"""Where to pull an image from: containers-registries.conf(5) v2 ``[[registry]]`` rules.

Tether talks to registries itself, so it must do what containers/image's sysregistriesv2 does
for a pull: pick the one ``[[registry]]`` table whose ``prefix`` is the longest match of the
image name, refuse ``blocked`` ones, and list the endpoints to try — the usable
``[[registry.mirror]]`` locations in order, then the primary ``location`` — with the name
rewritten from ``prefix`` to each location. Tether's own ``[images] mirrors`` (tried before the
file's mirrors of the same prefix) and ``insecure_registries`` are merged in here.

:func:`compile` validates the entries once (``registries.parse_text`` calls it, so a bad file
fails at load) into :class:`Registries`, matched by dict lookups; :func:`endpoints` is then
a pure, cheap function of a reference. No I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from shim.images.reference import (
    DEFAULT_DOMAIN,
    LEGACY_DOMAINS,
    InvalidReference,
    Reference,
    parse_name,
)
from shim.images.regconf import RegistriesConf, RegistriesConfError

PULL_FROM_MIRROR = ("all", "digest-only", "tag-only")

_LABEL = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?\Z")
_HOST = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?\Z"
)


@dataclass(frozen=True)
class Endpoint:
    domain: str  # "host[:port]" as configured (docker.io stays "docker.io")
    path: str  # repository path at that endpoint
    insecure: bool  # plain HTTP allowed / TLS not verified
    mirror: bool

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}"


class Blocked(Exception):
    """The ``[[registry]]`` table matching the image sets ``blocked = true``."""


@dataclass(frozen=True)
class _Mirror:
    location: str
    insecure: bool
    pull_from_mirror: str  # "" (= all), "all", "digest-only", "tag-only"


@dataclass(frozen=True)
class _Entry:
    prefix: str  # "host[:port][/path]" or "*.domain"
    location: str  # "" only for a wildcard prefix: no rewrite
    insecure: bool
    blocked: bool
    mirror_by_digest_only: bool
    mirrors: tuple[_Mirror, ...] = ()

    @property
    def wildcard(self) -> bool:
        return self.prefix.startswith("*.")


@dataclass(frozen=True)
class Registries:
    """Compiled ``[[registry]]`` tables (Tether's mirrors/insecure merged in)."""

    exact: Mapping[str, _Entry]  # prefix -> entry
    wildcard: Mapping[str, _Entry]  # ".example.com" (prefix without "*") -> entry
    insecure_hosts: frozenset[str]  # Tether's insecure_registries
    path: str = ""


class _Bad(ValueError):
    """An entry problem; compile() adds the file and the entry to the message."""


def _host_of(location: str) -> str:
    return location.partition("/")[0]


def _check_name(value: str, what: str) -> str:
    """Validate a non-wildcard ``host[:port][/path]``; return it with docker.io normalised.

    The host is only checked for syntax: a dotless name (a cluster-local mirror) is fine.
    """
    if "*" in value:
        raise _Bad(
            f"{what} {value!r}: invalid wildcard (only a leading '*.' on a bare host, "
            "e.g. '*.example.com', is supported)"
        )
    host, _, path = value.partition("/")
    if "@" in value or ":" in path:
        raise _Bad(f"{what} {value!r}: a tag or digest is not supported here")
    if not _HOST.match(host):
        raise _Bad(f"{what} {value!r} must start with a registry host[:port]")
    if path:
        try:
            parse_name(f"localhost/{path}")
        except InvalidReference as e:
            raise _Bad(f"{what} {value!r}: {e}") from e
    if host in LEGACY_DOMAINS:
        host = DEFAULT_DOMAIN
    return f"{host}/{path}" if path else host


def _location(value: object, what: str) -> str:
    """``location``/``prefix`` as containers/image cleans it: no scheme, no trailing '/'."""
    if not isinstance(value, str):
        raise _Bad(f"{what} must be a string")
    text = value.rstrip("/")
    if text.startswith(("http://", "https://")):
        raise _Bad(f"{what} {value!r}: URI schemes are not supported")
    return text


def _prefix(value: str, what: str) -> str:
    if value.startswith("*."):
        labels = value[2:].split(".")
        if not all(_LABEL.match(label) for label in labels):
            raise _Bad(
                f"{what} {value!r}: invalid wildcard (only a leading '*.' on a bare host, "
                "e.g. '*.example.com', is supported)"
            )
        return value
    return _check_name(value, what)


def _bool(table: Mapping[str, object], key: str) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise _Bad(f"{key} must be true or false")
    return value


def _is_insecure(location: str, insecure: frozenset[str]) -> bool:
    return _host_of(location) in insecure or location in insecure


def _entry(raw: Mapping[str, object]) -> _Entry:
    location = _location(raw.get("location", ""), "location")
    prefix = _location(raw.get("prefix", ""), "prefix")
    if not prefix and not location:
        raise _Bad("neither prefix nor location is set")
    prefix = _prefix(prefix or location, "prefix")
    if location:
        _check_name(location, "location")
    elif not prefix.startswith("*."):
        location = prefix  # the man page: location defaults to prefix
    if "pull-from-mirror" in raw:
        raise _Bad("pull-from-mirror is only allowed in [[registry.mirror]] tables")
    by_digest = _bool(raw, "mirror-by-digest-only")
    raw_mirrors = raw.get("mirror", [])
    if not isinstance(raw_mirrors, list) or not all(isinstance(m, Mapping) for m in raw_mirrors):
        raise _Bad("[[registry.mirror]] must be an array of tables")
    mirrors = []
    for i, m in enumerate(raw_mirrors, 1):
        mloc = _location(m.get("location", ""), f"mirror #{i} location")
        if not mloc:
            raise _Bad(f"mirror #{i} has no location")
        _check_name(mloc, f"mirror #{i} location")
        pull = m.get("pull-from-mirror", "")
        if pull != "" and pull not in PULL_FROM_MIRROR:
            raise _Bad(
                f"mirror {mloc!r}: pull-from-mirror must be one of {', '.join(PULL_FROM_MIRROR)}"
            )
        if by_digest and pull:
            raise _Bad(
                f"mirror {mloc!r}: pull-from-mirror cannot be set when the registry sets "
                "mirror-by-digest-only"
            )
        try:
            minsecure = _bool(m, "insecure")
        except _Bad as e:
            raise _Bad(f"mirror {mloc!r}: {e}") from e
        assert isinstance(pull, str)
        mirrors.append(_Mirror(mloc, minsecure, pull))
    return _Entry(
        prefix=prefix,
        location=location,
        insecure=_bool(raw, "insecure"),
        blocked=_bool(raw, "blocked"),
        mirror_by_digest_only=by_digest,
        mirrors=tuple(mirrors),
    )


def _describe(i: int, raw: Mapping[str, object]) -> str:
    label = raw.get("prefix") or raw.get("location")
    return f"[[registry]] #{i}" + (f" ({label!r})" if isinstance(label, str) else "")


def _file_entries(conf: RegistriesConf) -> list[_Entry]:
    path = conf.path or "registries config"
    raw_entries = conf.doc.get("registry", [])
    if not isinstance(raw_entries, list) or not all(isinstance(r, Mapping) for r in raw_entries):
        raise RegistriesConfError(f"{path}: [[registry]] must be an array of tables")
    entries: list[_Entry] = []
    for i, raw in enumerate(raw_entries, 1):
        try:
            entries.append(_entry(raw))
        except _Bad as e:
            raise RegistriesConfError(f"{path}: {_describe(i, raw)}: {e}") from e
    # containers/image: one location listed several times must agree on insecure/blocked.
    seen: dict[str, _Entry] = {}
    for entry in entries:
        key = entry.location or entry.prefix
        other = seen.setdefault(key, entry)
        for flag in ("insecure", "blocked"):
            if getattr(other, flag) != getattr(entry, flag):
                raise RegistriesConfError(
                    f"{path}: registry {key!r} is defined multiple times with conflicting "
                    f"{flag!r} setting"
                )
    return entries


def compile(
    conf: RegistriesConf,
    mirrors: Mapping[str, Sequence[str]] | None = None,
    insecure: Sequence[str] = (),
) -> Registries:
    """Validate ``conf``'s ``[[registry]]`` tables and merge Tether's mirrors and insecure hosts.

    Raises RegistriesConfError naming the file (or ``[images]`` for Tether's own settings).
    """
    insecure_hosts = frozenset(h.rstrip("/") for h in insecure)
    by_prefix: dict[str, _Entry] = {}
    for entry in _file_entries(conf):
        by_prefix.setdefault(entry.prefix, entry)  # as containers/image: first of equal prefixes
    for host, locations in (mirrors or {}).items():
        try:
            key = _prefix(_location(host, "[images] mirrors key"), "[images] mirrors key")
            ours = [_location(m, f"[images] mirrors[{host!r}]") for m in locations]
            for m in ours:
                if not m:
                    raise _Bad(f"[images] mirrors[{host!r}]: empty mirror location")
                _check_name(m, f"[images] mirrors[{host!r}]")
        except _Bad as e:
            raise RegistriesConfError(str(e)) from e
        found = by_prefix.get(key) or _Entry(
            prefix=key,
            location="" if key.startswith("*.") else key,
            insecure=False,
            blocked=False,
            mirror_by_digest_only=False,
        )
        known = set(ours)
        merged = tuple(_Mirror(m, False, "") for m in dict.fromkeys(ours)) + tuple(
            m for m in found.mirrors if m.location not in known
        )
        by_prefix[key] = replace(found, mirrors=merged)
    exact: dict[str, _Entry] = {}
    wildcard: dict[str, _Entry] = {}
    for key, raw in by_prefix.items():
        final = replace(
            raw,
            insecure=raw.insecure
            or (bool(raw.location) and _is_insecure(raw.location, insecure_hosts)),
            mirrors=tuple(
                replace(m, insecure=m.insecure or _is_insecure(m.location, insecure_hosts))
                for m in raw.mirrors
            ),
        )
        if final.wildcard:
            wildcard[key[1:]] = final
        else:
            exact[key] = final
    return Registries(exact, wildcard, insecure_hosts, conf.path)


def validate(conf: RegistriesConf) -> None:
    """Raise RegistriesConfError if ``conf``'s ``[[registry]]`` tables are unusable."""
    compile(conf)


def _match(regs: Registries, ref: Reference) -> _Entry | None:
    name = ref.name
    while True:
        found = regs.exact.get(name)
        if found is not None:
            return found
        name, sep, _ = name.rpartition("/")
        if not sep:
            break
    host = ref.domain
    if not host.startswith("["):
        host = host.partition(":")[0]
    dot = host.find(".")
    while dot != -1:
        found = regs.wildcard.get(host[dot:])
        if found is not None:
            return found
        dot = host.find(".", dot + 1)
    return None


def _at(location: str, rest: str, insecure: bool, mirror: bool, ref: Reference) -> Endpoint:
    domain, _, path = (location + rest).partition("/")
    if not path:
        raise InvalidReference(
            f"{ref.name} is rewritten to {location + rest!r} by registries config, "
            "which names no repository"
        )
    return Endpoint(domain, path, insecure, mirror)


def endpoints(regs: Registries, ref: Reference) -> list[Endpoint]:
    """The endpoints to pull ``ref`` from, in order: usable mirrors, then the primary.

    ``ref.digest`` set means a pull by digest (for ``mirror-by-digest-only`` and
    ``pull-from-mirror``). Raises Blocked when the matching table is blocked, and
    InvalidReference when a rewrite leaves no repository path.
    """
    entry = _match(regs, ref)
    if entry is None:
        return [Endpoint(ref.domain, ref.path, ref.domain in regs.insecure_hosts, False)]
    if entry.blocked:
        raise Blocked(
            f"registry {ref.domain} is blocked in {regs.path or 'registries config'} "
            f"([[registry]] prefix {entry.prefix!r})"
        )
    # A wildcard replaces the whole host; a name prefix is followed by "/" or nothing.
    rest = f"/{ref.path}" if entry.wildcard else ref.name[len(entry.prefix) :]
    by_digest = ref.digest is not None
    out: list[Endpoint] = []
    for m in entry.mirrors:
        if entry.mirror_by_digest_only and not by_digest:
            continue
        if m.pull_from_mirror == "digest-only" and not by_digest:
            continue
        if m.pull_from_mirror == "tag-only" and by_digest:
            continue
        out.append(_at(m.location, rest, m.insecure, True, ref))
    if entry.location:
        out.append(_at(entry.location, rest, entry.insecure, False, ref))
    else:
        insecure = entry.insecure or ref.domain in regs.insecure_hosts
        out.append(Endpoint(ref.domain, ref.path, insecure, False))
    return out
