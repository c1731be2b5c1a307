"""The SQLite database file: connection settings and versioned schema migrations.

WAL journaling makes every transaction land whole or not at all, even when the process is
killed mid-write; ``synchronous=NORMAL`` skips an fsync per commit (a power cut may lose the last
commits, never corrupt the file).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3

# Each entry moves the schema from version i to i+1; never edit a shipped one, append.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE sandboxes (id TEXT PRIMARY KEY, state TEXT NOT NULL, doc TEXT NOT NULL);
    CREATE TABLE containers (id TEXT PRIMARY KEY, state TEXT NOT NULL, doc TEXT NOT NULL);
    CREATE TABLE images (id TEXT PRIMARY KEY, state TEXT NOT NULL, doc TEXT NOT NULL);
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(Exception):
    pass


def connect(path: str) -> sqlite3.Connection:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    # root's only (its dir may be searchable: the daemon's root is 0711); SQLite gives the
    # -wal and -shm files the database's mode
    os.close(os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600))
    for f in (path, path + "-wal", path + "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(f, 0o600)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    migrate(conn)
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations the file lacks, each in its own transaction; return the version."""
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"database schema version {version} is newer than this tether ({SCHEMA_VERSION})"
        )
    for i in range(version, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for stmt in MIGRATIONS[i].split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            conn.execute(f"PRAGMA user_version={i + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION
