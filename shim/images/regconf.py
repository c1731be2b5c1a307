"""The loaded containers-registries.conf(5), as data: what ``registries`` (loading, short
names) makes and ``endpoints`` (the ``[[registry]]`` rules) reads. Its own module so that
``registries`` may call ``endpoints`` to validate a file it loads without an import cycle."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shim.images.reference import DEFAULT_DOMAIN


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
