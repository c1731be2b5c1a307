"""``Lifecycle``: the skeleton both managers share (the sandbox manager here, the container
manager in ``shim/containers``): a lock per object, lookups by id or unique prefix, the name
reservations that make a duplicate create AlreadyExists, the "intent, then undo" protocol
of a create, and the pidfd watch that learns of a process's exit on the event loop.

It lives in ``podsandbox/`` because ``podsandbox/`` may not import ``shim/``, while ``shim/``
may import ``podsandbox/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, Protocol, TypeVar

from cni.errdefs import NotFound
from podsandbox import kernel
from podsandbox.types import Process


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


R = TypeVar("R", bound=_HasId)


class Records(Protocol[R]):
    """What the skeleton needs of a manager's repository (``shim.store.Repository`` fits)."""

    def get(self, id_: str, /) -> R | None: ...

    def resolve(self, id_or_prefix: str, /) -> str | None: ...

    async def delete(self, rec: R, /) -> None: ...


class Lifecycle(Generic[R]):
    def __init__(self, kind: str, records: Records[R]) -> None:
        self.kind = kind  # in messages: "pod sandbox", "container"
        self.records = records
        self._locks: dict[str, asyncio.Lock] = {}
        self._names: dict[str, str] = {}  # name key (``_name_key``) -> id
        self._watched: dict[str, int] = {}  # id -> pidfd of the process whose exit we await

    def _name_key(self, rec: R) -> str:
        """What makes two objects the same by name (the CRI metadata)."""
        raise NotImplementedError

    # --- lookups ---------------------------------------------------------------------------
    def _lock(self, id_: str) -> asyncio.Lock:
        return self._locks.setdefault(id_, asyncio.Lock())

    def resolve(self, id_or_prefix: str) -> str | None:
        return self.records.resolve(id_or_prefix)

    def get(self, id_or_prefix: str) -> R:
        id_ = self.resolve(id_or_prefix)
        rec = self.records.get(id_) if id_ else None
        if rec is None:
            raise NotFound(f"{self.kind} {id_or_prefix!r} not found")
        return rec

    # --- names -----------------------------------------------------------------------------
    def _reserve(self, key: str, id_: str) -> str | None:
        """Reserve ``key`` for ``id_``; the id that holds it already, if another does."""
        holder = self._names.setdefault(key, id_)
        return holder if holder != id_ else None

    def _remember(self, rec: R) -> None:
        """At reconcile: the name of an object in the store is taken."""
        self._names[self._name_key(rec)] = rec.id

    async def _forget(self, rec: R) -> None:
        """The object is gone: its record, its name, its lock."""
        await self.records.delete(rec)
        key = self._name_key(rec)
        if self._names.get(key) == rec.id:
            del self._names[key]
        self._locks.pop(rec.id, None)

    # --- intent, then undo -----------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _intent(self, id_: str, key: str, write: Callable[[], Awaitable[None]],
                      undo: Callable[[BaseException], Awaitable[None]]) -> AsyncIterator[None]:
        """A create, under the object's lock: ``write`` the intent record before any side
        effect (the name is released if it cannot be written), then the body; if the body
        fails, ``undo`` (idempotent, from the record alone) and the failure goes on. A crash
        in between leaves the intent for the next start's reconcile to roll back."""
        async with self._lock(id_):
            try:
                await write()
            except BaseException:
                if self._names.get(key) == id_:
                    del self._names[key]
                raise
            try:
                yield
            except BaseException as e:
                await undo(e)
                raise

    # --- exits -----------------------------------------------------------------------------
    def _watch_process(self, id_: str, proc: Process, on_exit: Callable[[str], None]) -> bool:
        """Call ``on_exit(id_)`` on the event loop once ``proc`` has ended: pidfd readiness,
        no polling of /proc. False when it cannot be watched because it is gone already (its
        pid gone, or another process's now)."""
        if id_ in self._watched:
            return True
        try:
            fd = os.pidfd_open(proc.pid)
        except OSError:
            return False
        if kernel.start_time(proc.pid) != proc.start_time:  # checked with the pid pinned
            os.close(fd)
            return False
        self._watched[id_] = fd
        asyncio.get_running_loop().add_reader(fd, self._process_ended, id_, on_exit)
        return True

    def _process_ended(self, id_: str, on_exit: Callable[[str], None]) -> None:
        self._unwatch(id_)
        on_exit(id_)

    def _unwatch(self, id_: str) -> None:
        fd = self._watched.pop(id_, None)
        if fd is not None:
            asyncio.get_running_loop().remove_reader(fd)
            os.close(fd)
