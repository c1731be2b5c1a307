"""The store's records read once, read-only, by a tool while the daemon may be down
(``tether ns``): nothing is written, migrated or checkpointed (SQLite may create the empty
``-wal``/``-shm`` side files a reader of a WAL database needs; the daemon opens them as its own)."""

from __future__ import annotations

import os
import sqlite3

from shim.store.db import SCHEMA_VERSION, SchemaTooNew
from shim.store.records import ContainerRecord, SandboxRecord


def read(path: str) -> tuple[list[SandboxRecord], list[ContainerRecord]]:
    """Every sandbox and container record in the database at ``path``. A running daemon's
    uncommitted writes are not seen; a killed one's committed WAL is."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no store at {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(f"database schema version {version} is newer than this tether "
                               f"({SCHEMA_VERSION})")
        if version == 0:
            return [], []  # never migrated: no tables yet
        sandboxes = [SandboxRecord.from_json(doc)
                     for (doc,) in conn.execute(f"SELECT doc FROM {SandboxRecord.TABLE}")]
        containers = [ContainerRecord.from_json(doc)
                      for (doc,) in conn.execute(f"SELECT doc FROM {ContainerRecord.TABLE}")]
        return sandboxes, containers
    finally:
        conn.close()
