"""Image references: parse and normalise ``[domain/]path[:tag][@digest]`` as Docker does.

``busybox`` becomes ``docker.io/library/busybox:latest``; whether a name was *short* (no
registry part) is kept, so registries.conf search rules and aliases can apply to it (see
:mod:`shim.images.registries`). Pure functions; errors are ``InvalidReference`` (the manager
turns them into ``InvalidArgument`` naming the image).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAINS = ("index.docker.io", "registry-1.docker.io")
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_COMPONENT = re.compile(rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*\Z")
_DOMAIN_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"(?:{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?\Z"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}\Z")
_DIGEST = re.compile(r"(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})\Z")
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")


class InvalidReference(ValueError):
    """Not a valid image reference; the message says why."""


@dataclass(frozen=True)
class Reference:
    domain: str
    path: str  # "library/busybox"
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``docker.io/library/busybox``: the repository, without tag or digest."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def with_digest(self, digest: str) -> Reference:
        """``name@digest``: the canonical (repo digest) form."""
        return Reference(self.domain, self.path, None, digest)

    def tagged(self) -> str | None:
        """``name:tag`` when the reference has a tag, else None."""
        return f"{self.name}:{self.tag}" if self.tag else None


@dataclass(frozen=True)
class ParsedName:
    """What the user wrote, split up, before any registry is chosen for a short name."""

    domain: str | None  # None: a short name
    path: str
    tag: str | None
    digest: str | None

    @property
    def short(self) -> bool:
        return self.domain is None

    def qualify(self, domain: str) -> Reference:
        """The reference on registry ``domain`` (``library/`` for docker.io official images)."""
        path = self.path
        if domain == DEFAULT_DOMAIN and "/" not in path:
            path = OFFICIAL_PREFIX + path
        tag = self.tag if (self.tag or self.digest) else DEFAULT_TAG
        return Reference(domain, path, tag, self.digest)


def is_image_id(text: str) -> bool:
    """``sha256:<64 hex>`` or a bare 64-hex id."""
    return bool(_HEX64.match(text.removeprefix("sha256:")))


def normalize_id(text: str) -> str:
    return text if text.startswith("sha256:") else f"sha256:{text}"


def _split_domain(name: str) -> tuple[str | None, str]:
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        return first, rest
    return None, name


def parse_name(text: str) -> ParsedName:
    """Split and validate; raise InvalidReference for anything Docker would refuse."""
    if not text:
        raise InvalidReference("empty image reference")
    if text != text.strip() or any(c.isspace() for c in text):
        raise InvalidReference("image reference contains whitespace")
    if _HEX64.match(text):
        raise InvalidReference(
            "a 64-character hexadecimal string is an image id, not a reference to pull"
        )
    rest, at, digest = text.partition("@")
    if at and not _DIGEST.match(digest):
        raise InvalidReference(f"invalid digest {digest!r} (want sha256:<64 hex>)")
    tag: str | None = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.match(tag):
            raise InvalidReference(f"invalid tag {tag!r}")
    domain, path = _split_domain(rest)
    if domain is not None:
        if not _DOMAIN.match(domain):
            raise InvalidReference(f"invalid registry host {domain!r}")
        if domain in LEGACY_DOMAINS:
            domain = DEFAULT_DOMAIN
    if not path:
        raise InvalidReference("missing repository name")
    for comp in path.split("/"):
        if not _COMPONENT.match(comp):
            if comp.lower() != comp:
                raise InvalidReference(f"repository name must be lowercase ({comp!r})")
            raise InvalidReference(f"invalid repository name component {comp!r}")
    if len(path) + len(domain or DEFAULT_DOMAIN) + 1 > NAME_MAX:
        raise InvalidReference(f"repository name longer than {NAME_MAX} characters")
    return ParsedName(domain, path, tag, digest or None)


def parse(text: str, default_domain: str = DEFAULT_DOMAIN) -> Reference:
    """A fully-qualified reference: short names go to ``default_domain``, no tag → latest."""
    parsed = parse_name(text)
    return parsed.qualify(parsed.domain or default_domain)
