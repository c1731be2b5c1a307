"""Container events for GetContainerEvents (the kubelet's evented PLEG).

The container manager publishes one event per transition (created, started, stopped,
deleted) with a snapshot of the pod's record and of its containers' records, taken at that
moment, so every subscriber sees the same states in the same order. Each subscriber has a
bounded queue: publishing never waits, and a subscriber that falls behind is dropped (its
stream ends with RESOURCE_EXHAUSTED, and the kubelet goes back to relisting) rather than
slowing the daemon or growing without bound.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum

from shim.errors import ResourceExhausted
from shim.store import ContainerRecord, SandboxRecord

QUEUE_SIZE = 1000


class Kind(StrEnum):
    CREATED = "created"
    STARTED = "started"
    STOPPED = "stopped"
    DELETED = "deleted"


@dataclass(frozen=True)
class ContainerEvent:
    kind: Kind
    container_id: str
    at: int  # ns since the epoch
    pod: SandboxRecord | None
    containers: list[ContainerRecord] = field(default_factory=list)


class Subscriber:
    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[ContainerEvent | None] = asyncio.Queue(size)
        self.dropped = False

    async def get(self) -> ContainerEvent:
        ev = await self.queue.get()
        if ev is None:
            raise ResourceExhausted(
                "GetContainerEvents: this subscriber fell behind by more than "
                f"{self.queue.maxsize} events and was dropped; list the containers again")
        return ev


class EventBus:
    def __init__(self, queue_size: int = QUEUE_SIZE) -> None:
        self.queue_size = queue_size
        self._subscribers: set[Subscriber] = set()
        self.dropped_total = 0

    @property
    def active(self) -> bool:
        return bool(self._subscribers)

    @contextmanager
    def subscribe(self) -> Iterator[Subscriber]:
        sub = Subscriber(self.queue_size)
        self._subscribers.add(sub)
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)

    def publish(self, make: Callable[[], ContainerEvent]) -> None:
        """``make`` builds the event (with its snapshots) only when someone listens."""
        if not self._subscribers:
            return
        ev = make()
        for sub in list(self._subscribers):
            if sub.dropped:
                continue
            if sub.queue.qsize() >= self.queue_size - 1:  # keep a place for the end mark
                sub.dropped = True
                self.dropped_total += 1
                sub.queue.put_nowait(None)
                continue
            sub.queue.put_nowait(ev)


def snapshot(kind: Kind, container_id: str, at: int, pod: SandboxRecord | None,
             containers: list[ContainerRecord]) -> ContainerEvent:
    return ContainerEvent(kind, container_id, at, copy.deepcopy(pod),
                          [copy.deepcopy(c) for c in containers])
