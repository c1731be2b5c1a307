"""The metadata store: migrations, typed round trips, transactions, the in-memory index."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from podsandbox.types import SandboxDetails, State
from shim.store import ContainerRecord, SandboxRecord, Store, db


def test_fresh_database_is_migrated_and_in_wal_mode(tmp_path: Path) -> None:
    s = Store(str(tmp_path / "t.db"))
    s.close()
    conn = sqlite3.connect(tmp_path / "t.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == db.SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"sandboxes", "containers", "images"} <= tables


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "t.db")
    conn.execute(f"PRAGMA user_version={db.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(db.SchemaTooNew):
        Store(str(tmp_path / "t.db"))


def test_records_round_trip_and_survive_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "t.db")
    s = Store(path)
    sb = SandboxRecord(id="a" * 64, name="web", namespace="default", uid="u1", attempt=2,
                       state=State.READY, created_at=123, labels={"app": "web"},
                       details=SandboxDetails(pins={"net": "/run/tether/ns/net/x"},
                                              cgroup_created=["a", "a/b"]))
    asyncio.run(s.sandboxes.put(sb))
    assert s.sandboxes.get(sb.id) == sb
    s.close()
    s2 = Store(path)
    assert s2.sandboxes.get(sb.id) == sb
    assert s2.sandboxes.list(lambda r: r.state is State.READY) == [sb]
    s2.close()


def test_reads_are_copies(tmp_path: Path) -> None:
    s = Store(str(tmp_path / "t.db"))
    asyncio.run(s.sandboxes.put(SandboxRecord(id="x", labels={"a": "1"})))
    got = s.sandboxes.get("x")
    assert got is not None
    got.labels["a"] = "changed"
    assert s.sandboxes.get("x") == SandboxRecord(id="x", labels={"a": "1"})
    s.close()


def test_multi_record_write_is_all_or_nothing(tmp_path: Path) -> None:
    s = Store(str(tmp_path / "t.db"))
    good = ContainerRecord(id="c1", sandbox_id="x")

    class Boom(ContainerRecord):
        def to_json(self) -> str:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        s.write_sync([(s.containers, good, False), (s.containers, Boom(id="c2"), False)])
    assert s.containers.get("c1") is None
    s.close()
    s = Store(str(tmp_path / "t.db"))
    assert len(s.containers) == 0
    s.close()


def test_delete(tmp_path: Path) -> None:
    s = Store(str(tmp_path / "t.db"))
    rec = SandboxRecord(id="x")
    asyncio.run(s.sandboxes.put(rec))
    asyncio.run(s.sandboxes.delete(rec))
    assert s.sandboxes.get("x") is None
    assert s.integrity_check() == "ok"
    s.close()


def test_an_answer_is_kept_until_the_table_is_written(tmp_path: Path) -> None:
    s = Store(str(tmp_path / "t.db"))
    made: list[list[str]] = []

    def ids() -> list[str]:
        made.append(sorted(s.sandboxes.ids()))
        return made[-1]

    first = s.sandboxes.answer("ids", ids)
    assert s.sandboxes.answer("ids", ids) is first and made == [[]]
    asyncio.run(s.containers.put(ContainerRecord(id="c")))  # another table: still good
    assert s.sandboxes.answer("ids", ids) is first
    rec = SandboxRecord(id="x")
    asyncio.run(s.sandboxes.put(rec))
    assert s.sandboxes.answer("ids", ids) == ["x"]
    rec.state = State.READY
    asyncio.run(s.sandboxes.put(rec))  # a change of state is a write too
    s.sandboxes.answer("ids", ids)
    asyncio.run(s.sandboxes.delete(rec))
    assert s.sandboxes.answer("ids", ids) == []
    assert made == [[], ["x"], ["x"], []]
    with pytest.raises(RuntimeError):  # a failed write changes nothing: the answer holds
        s.write_sync([(s.sandboxes, SandboxRecord(id="y"), False),
                      (s.sandboxes, _Broken(id="z"), False)])
    assert s.sandboxes.answer("ids", ids) == [] and len(made) == 4
    s.close()


class _Broken(SandboxRecord):
    def to_json(self) -> str:
        raise RuntimeError("boom")
