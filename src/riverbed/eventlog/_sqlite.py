"""SQLite plumbing for the log: the table layout, connections, error translation.

See :mod:`riverbed.eventlog._storage` for why the log is built on SQLite.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from riverbed._errors import ConfigError, SourceError, TransientError

FORMAT = 1
"""Storage format version written in each topic; readers refuse newer formats."""
DB_NAME = "topic.db"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,248}")
BUSY_TIMEOUT_S = 60.0

DDL = """
CREATE TABLE topic (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    name TEXT NOT NULL,
    partitions INTEGER NOT NULL,
    retention_ms INTEGER,
    retention_bytes INTEGER,
    schema BLOB,
    created_ms INTEGER NOT NULL,
    format INTEGER NOT NULL
);
CREATE TABLE partitions (
    partition INTEGER PRIMARY KEY,
    start_offset INTEGER NOT NULL,
    next_offset INTEGER NOT NULL
);
CREATE TABLE batches (
    partition INTEGER NOT NULL,
    base_offset INTEGER NOT NULL,
    count INTEGER NOT NULL,
    append_ms INTEGER NOT NULL,
    nbytes INTEGER NOT NULL,
    crc32 INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (partition, base_offset)
);
CREATE TABLE groups (
    grp TEXT NOT NULL,
    partition INTEGER NOT NULL,
    position INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (grp, partition)
);
CREATE TABLE writers (
    writer TEXT PRIMARY KEY,
    epoch INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
"""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def check_name(name: str) -> None:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(
            f"invalid topic name {name!r}: expected 1-249 characters from A-Z a-z 0-9 . _ -, "
            "not starting with '.', '_' or '-'"
        )


def connect(path: Path, *, durable: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    return conn


@contextlib.contextmanager
def sqlite_errors(where: str) -> Iterator[None]:
    """Turn sqlite3 errors into riverbed errors that say where."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise TransientError(f"{where}: the topic stayed locked: {exc}") from exc
        raise SourceError(f"{where}: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        raise SourceError(
            f"{where}: the topic database is damaged: {exc}\n"
            "  hint: copy the topic's directory aside and inspect it with the sqlite3 shell"
        ) from exc


def create_database(
    path: Path, name: str, partitions: int, retention_ms: int | None, retention_bytes: int | None
) -> None:
    """Create a topic's database file at ``path`` (not yet visible under its name)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA page_size=65536")
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(f"BEGIN;\n{DDL}\nCOMMIT;")
        conn.execute("BEGIN")
        conn.execute(
            "INSERT INTO topic VALUES (1, ?, ?, ?, ?, NULL, ?, ?)",
            (name, partitions, retention_ms, retention_bytes, now_ms(), FORMAT),
        )
        conn.executemany("INSERT INTO partitions VALUES (?, 0, 0)", [(p,) for p in range(partitions)])
        conn.execute("COMMIT")
    finally:
        conn.close()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
