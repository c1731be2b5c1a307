"""Typed repositories over the database, with an in-memory index that serves every read.

Writes go to SQLite first (one transaction, on the store's single writer thread) and reach the
index only once committed, so memory never shows what the database does not hold. Reads never
touch SQLite: the kubelet's List/Status polling is answered from memory.
"""

from __future__ import annotations

import asyncio
import builtins
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar, cast

from shim.store import db
from shim.store.memo import IdentityMemo
from shim.store.records import ContainerRecord, ImageRecord, Record, SandboxRecord

R = TypeVar("R", bound=Record)
T = TypeVar("T")


class Repository(Generic[R]):
    def __init__(self, store: Store, cls: type[R]) -> None:
        self._store = store
        self._cls = cls
        self._index: dict[str, R] = {}
        self._memo = IdentityMemo()
        self._version = 0  # bumped by every write that reaches the index
        self._answers: dict[str, tuple[int, Any]] = {}

    def _load(self, conn: sqlite3.Connection) -> None:
        rows = conn.execute(f"SELECT doc FROM {self._cls.TABLE}").fetchall()
        self._index = {r.id: r for r in (self._cls.from_json(doc) for (doc,) in rows)}
        self._version += 1

    # Reads: memory only. Callers get copies, so they cannot change the index behind its back.
    def get(self, id_: str) -> R | None:
        rec = self._index.get(id_)
        return rec.copy() if rec is not None else None

    def list(self, pred: Callable[[R], bool] | None = None) -> builtins.list[R]:
        return [r.copy() for r in self._index.values() if pred is None or pred(r)]

    def scan(self, fn: Callable[[R], T | None]) -> builtins.list[T]:
        """Apply a read-only ``fn`` to each record without copying it; keep non-None results.
        For hot paths (List calls) that only convert records; ``fn`` must not mutate."""
        out = []
        for rec in self._index.values():
            value = fn(rec)
            if value is not None:
                out.append(value)
        return out

    def memo(self, key: str, fn: Callable[[R], T]) -> Callable[[R], T]:
        """``fn`` cached per record until that record is written again (each write puts a new
        object in the index, so identity tells). For hot-path conversions (CRI messages)."""
        return self._memo.wrap(key, fn)

    def answer(self, key: str, make: Callable[[], T]) -> T:
        """``make()``, kept until the table is written again: for a hot-path answer built
        from the whole table (an unfiltered List response), so that the kubelet's polling
        of an unchanged table costs a lookup. ``make`` must read only this table, and the
        value must not be changed by those it is handed to."""
        hit = self._answers.get(key)
        if hit is not None and hit[0] == self._version:
            return cast(T, hit[1])  # stored by this key's make
        value = make()
        self._answers[key] = (self._version, value)
        return value

    def prepared(self, key: str) -> Any:
        """What ``answer(key, ...)`` would return without making it: the kept value if the
        table has not been written since, else None. Safe off the event loop (a gRPC server
        thread): it reads two references; a write racing it makes it miss, never mix."""
        hit = self._answers.get(key)
        version = self._version
        return hit[1] if hit is not None and hit[0] == version else None

    def resolve(self, id_or_prefix: str) -> str | None:
        """A full id, or a unique prefix of one (crictl users type prefixes)."""
        if not id_or_prefix:
            return None
        if id_or_prefix in self._index:
            return id_or_prefix
        matches = [i for i in self._index if i.startswith(id_or_prefix)]
        return matches[0] if len(matches) == 1 else None

    def ids(self) -> builtins.list[str]:
        return list(self._index)

    def __len__(self) -> int:
        return len(self._index)

    # Writes.
    async def put(self, rec: R) -> None:
        await self._store.write([(self, rec, False)])

    async def delete(self, rec: R) -> None:
        await self._store.write([(self, rec, True)])

    def _sql(self, conn: sqlite3.Connection, rec: R, delete: bool) -> None:
        if delete:
            conn.execute(f"DELETE FROM {self._cls.TABLE} WHERE id = ?", (rec.id,))
        else:
            state = str(getattr(rec, "state", ""))  # an enum's value
            conn.execute(
                f"INSERT OR REPLACE INTO {self._cls.TABLE} (id, state, doc) VALUES (?, ?, ?)",
                (rec.id, state, rec.to_json()),
            )

    def _apply(self, rec: R, delete: bool) -> None:
        self._version += 1
        if delete:
            self._index.pop(rec.id, None)
            self._memo.forget(rec.id)
        else:
            self._index[rec.id] = rec.copy()


Write = tuple[Repository, Record, bool]


class Store:
    """The metadata store: one SQLite file, one writer thread, three typed repositories."""

    def __init__(self, path: str) -> None:
        self.path = path
        # One thread owns the connection: SQLite writes are serialised anyway.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._conn = db.connect(path)
        self.sandboxes: Repository[SandboxRecord] = Repository(self, SandboxRecord)
        self.containers: Repository[ContainerRecord] = Repository(self, ContainerRecord)
        self.images: Repository[ImageRecord] = Repository(self, ImageRecord)
        for repo in self._repos():
            repo._load(self._conn)

    def _repos(self) -> Iterable[Repository]:
        return (self.sandboxes, self.containers, self.images)

    def _commit(self, writes: list[Write]) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for repo, rec, delete in writes:
                repo._sql(conn, rec, delete)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def write(self, writes: list[Write]) -> None:
        """Commit several puts/deletes in one transaction, then show them in memory."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._commit, writes)
        for repo, rec, delete in writes:
            repo._apply(rec, delete)

    def write_sync(self, writes: list[Write]) -> None:
        """For callers without an event loop (tools, tests)."""
        self._executor.submit(self._commit, writes).result()
        for repo, rec, delete in writes:
            repo._apply(rec, delete)

    def integrity_check(self) -> str:
        result: str = self._executor.submit(
            lambda: self._conn.execute("PRAGMA integrity_check").fetchone()[0]
        ).result()
        return result

    def close(self) -> None:
        def _close() -> None:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()

        self._executor.submit(_close).result()
        self._executor.shutdown(wait=True)
