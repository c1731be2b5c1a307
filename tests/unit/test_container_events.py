"""The container event bus: order, snapshots, and a slow subscriber dropped, not waited for."""

from __future__ import annotations

import asyncio

import pytest

from shim.containers.events import EventBus, Kind, snapshot
from shim.containers.types import CState
from shim.errors import ResourceExhausted
from shim.store import ContainerRecord, SandboxRecord


def test_events_in_order_with_snapshots_and_nothing_built_without_listeners() -> None:
    async def go() -> None:
        bus = EventBus(queue_size=10)
        built = []

        def make(kind: Kind, rec: ContainerRecord) -> object:
            def build() -> object:
                built.append(kind)
                return snapshot(kind, rec.id, 1, SandboxRecord(id="p"), [rec])
            return build

        rec = ContainerRecord(id="c", sandbox_id="p", state=CState.CREATED)
        bus.publish(make(Kind.CREATED, rec))  # type: ignore[arg-type]
        assert built == []  # nobody listens: no snapshot taken
        with bus.subscribe() as sub:
            for kind in (Kind.CREATED, Kind.STARTED, Kind.STOPPED):
                bus.publish(make(kind, rec))  # type: ignore[arg-type]
                rec.state = CState.EXITED  # changed later
            got = [await sub.get() for _ in range(3)]
        assert [e.kind for e in got] == [Kind.CREATED, Kind.STARTED, Kind.STOPPED]
        assert got[0].containers[0].state is CState.CREATED  # the state at that moment
        assert not bus.active

    asyncio.run(go())


def test_a_subscriber_that_falls_behind_is_dropped() -> None:
    async def go() -> None:
        bus = EventBus(queue_size=5)
        rec = ContainerRecord(id="c", sandbox_id="p")
        with bus.subscribe() as slow, bus.subscribe() as fast:
            for i in range(20):
                bus.publish(lambda i=i: snapshot(Kind.STARTED, rec.id, i, None, [rec]))
                if i < 19:
                    await fast.get()
            got = [await slow.get() for _ in range(4)]  # what fit before it was dropped
            with pytest.raises(ResourceExhausted, match="fell behind"):
                await slow.get()
            assert (await fast.get()).at == 19  # the others go on
        assert len(got) == 4 and bus.dropped_total == 1

    asyncio.run(go())
