"""podsandbox.lifecycle.Lifecycle, the skeleton both managers share: lookups, names, the
intent-then-undo of a create, and the pidfd watch of a process's exit."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

from cni.errdefs import NotFound
from podsandbox import kernel
from podsandbox.lifecycle import Lifecycle
from podsandbox.types import Process


@dataclass
class Obj:
    id: str
    name: str = "n"


class Table:
    def __init__(self, *objs: Obj) -> None:
        self.data = {o.id: o for o in objs}

    def get(self, id_: str) -> Obj | None:
        return self.data.get(id_)

    def resolve(self, id_or_prefix: str) -> str | None:
        found = [i for i in self.data if i.startswith(id_or_prefix)] if id_or_prefix else []
        return found[0] if len(found) == 1 else None

    async def put(self, obj: Obj) -> None:
        self.data[obj.id] = obj

    async def delete(self, obj: Obj) -> None:
        self.data.pop(obj.id, None)


class Things(Lifecycle[Obj]):
    def _name_key(self, rec: Obj) -> str:
        return rec.name


def test_lookups_by_id_or_unique_prefix() -> None:
    things = Things("thing", Table(Obj("abc1"), Obj("abc2"), Obj("xyz")))
    assert things.get("xy").id == "xyz"
    assert things.resolve("abc") is None  # ambiguous
    with pytest.raises(NotFound, match=r"^thing 'abc' not found$"):
        things.get("abc")
    with pytest.raises(NotFound):
        things.get("")


def test_names_are_reserved_until_forgotten() -> None:
    table = Table()
    things = Things("thing", table)
    assert things._reserve("web", "a") is None
    assert things._reserve("web", "b") == "a"  # taken: who has it
    a = Obj("a", "web")
    asyncio.run(table.put(a))
    asyncio.run(things._forget(a))
    assert table.get("a") is None
    assert things._reserve("web", "b") is None
    things._remember(Obj("c", "db"))  # as reconcile does for what the store holds
    assert things._reserve("db", "d") == "c"


def test_intent_then_undo() -> None:
    table = Table()
    things = Things("thing", table)
    undone: list[str] = []
    obj = Obj("a", "web")

    async def write() -> None:
        await table.put(obj)

    async def undo(e: BaseException) -> None:
        assert things._lock("a").locked()  # still under the object's lock
        undone.append(str(e))
        await things._forget(obj)

    async def create(fail: bool) -> None:
        things._reserve("web", "a")
        async with things._intent("a", "web", write, undo):
            assert table.get("a") is obj  # the intent is written before the body
            if fail:
                raise RuntimeError("step 2 failed")

    with pytest.raises(RuntimeError, match="step 2"):
        asyncio.run(create(fail=True))
    assert undone == ["step 2 failed"] and table.get("a") is None
    assert things._reserve("web", "z") is None  # the undo freed the name
    things._names.clear()
    asyncio.run(create(fail=False))
    assert undone == ["step 2 failed"] and table.get("a") is obj


def test_an_intent_that_cannot_be_written_frees_the_name() -> None:
    things = Things("thing", Table())

    async def write() -> None:
        raise OSError("disk full")

    async def undo(e: BaseException) -> None:
        raise AssertionError("nothing to undo: no side effect was made")

    async def create() -> None:
        things._reserve("web", "a")
        async with things._intent("a", "web", write, undo):
            raise AssertionError("the body does not run")

    with pytest.raises(OSError, match="disk full"):
        asyncio.run(create())
    assert things._reserve("web", "b") is None


def test_watch_calls_back_once_when_the_process_ends() -> None:
    things = Things("thing", Table())

    async def main() -> list[str]:
        child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                                 stdin=subprocess.PIPE)
        start = kernel.start_time(child.pid)
        assert start is not None
        ended: list[str] = []
        done = asyncio.Event()

        def on_exit(id_: str) -> None:
            ended.append(id_)
            done.set()

        assert things._watch_process("a", Process(child.pid, start), on_exit)
        assert things._watch_process("a", Process(child.pid, start), on_exit)  # once only
        assert child.stdin is not None
        child.stdin.close()  # it exits
        await asyncio.wait_for(done.wait(), 10)
        child.wait()
        await asyncio.sleep(0.05)
        assert "a" not in things._watched
        # gone already, or its pid is another process's: cannot be watched
        assert not things._watch_process("b", Process(child.pid, start), on_exit)
        me = kernel.start_time(os.getpid()) or 0
        assert not things._watch_process("c", Process(os.getpid(), me + 1), on_exit)
        assert things._watched == {}
        return ended

    assert asyncio.run(main()) == ["a"]
