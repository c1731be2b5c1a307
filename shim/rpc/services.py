"""``Services``: what a CRI handler may touch, and nothing else of the daemon.

Handlers are typed against this Protocol, not against ``Daemon`` (which satisfies it, checked
where it binds the handlers), so a reader of a handler knows its reach: the managers, the
store's read side (the polled calls answer from memory), the namespace policy, the stats
collector, the streaming server, the config and the readiness checks. Handlers never write
the store: state changes go through a manager.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from podsandbox.manager import SandboxManager
from shim.config import Config
from shim.containers.manager import ContainerManager
from shim.images import ImageManager
from shim.nspolicy.policy import NamespacePolicy
from shim.oci.features import HandlerFeatures
from shim.stats.collector import Collector
from shim.store import ContainerRecord, SandboxRecord
from shim.streaming.server import StreamingServer

R = TypeVar("R")
T = TypeVar("T")


class Table(Protocol[R]):
    """The read side of a repository (``shim.store.Repository``): memory only."""

    def list(self) -> Sequence[R]: ...

    def scan(self, fn: Callable[[R], T | None], /) -> builtins.list[T]: ...

    def memo(self, key: str, fn: Callable[[R], T], /) -> Callable[[R], T]: ...

    def answer(self, key: str, make: Callable[[], T], /) -> T: ...

    def prepared(self, key: str, /) -> Any: ...

    def ids(self) -> builtins.list[str]: ...


class Tables(Protocol):
    @property
    def sandboxes(self) -> Table[SandboxRecord]: ...

    @property
    def containers(self) -> Table[ContainerRecord]: ...


class Services(Protocol):
    @property
    def config(self) -> Config: ...

    @property
    def store(self) -> Tables: ...

    @property
    def sandboxes(self) -> SandboxManager[SandboxRecord]: ...

    @property
    def containers(self) -> ContainerManager: ...

    @property
    def images(self) -> ImageManager: ...

    @property
    def nspolicy(self) -> NamespacePolicy: ...

    @property
    def stats(self) -> Collector: ...

    @property
    def streaming(self) -> StreamingServer: ...

    @property
    def features(self) -> Mapping[str, HandlerFeatures]: ...

    def runtime_ready(self) -> tuple[bool, str, str]: ...

    async def network_ready(self) -> tuple[bool, str]: ...
