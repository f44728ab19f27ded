"""A topic: append, read, offsets, consumer groups, retention, integrity checks."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import polars as pl

from riverbed._errors import ConfigError, PlanError, SourceError
from riverbed.eventlog import _codec, _routing, _sqlite
from riverbed.eventlog._sqlite import DB_NAME, FORMAT, connect, sqlite_errors
from riverbed.eventlog._types import (
    METADATA_COLUMNS,
    AppendResult,
    PartitionInfo,
    TopicDescription,
)

__all__ = ["Topic"]

logger = logging.getLogger("riverbed.eventlog")

_TAIL_CHECK = 3  # newest batches per partition verified when a topic is opened
_CHECKED_TAILS: dict[tuple[str, int], tuple[int, int]] = {}  # (db, partition) -> newest batch
_MAX_BLOB_BYTES = 64 << 20
_RETENTION_EVERY_MS = 1_000


class Topic:
    """One topic: N partitions of append-only, offset-addressed record batches.

    Get one from :meth:`Log.topic` or :meth:`Log.create_topic`. A ``Topic`` holds its own
    SQLite connection and may be used from several threads; other processes may open the same
    topic at the same time.

    Examples
    --------
    >>> import tempfile
    >>> from riverbed.eventlog import Log
    >>> home = tempfile.TemporaryDirectory()
    >>> log = Log(home.name)
    >>> t = log.create_topic("orders", partitions=2)
    >>> df = pl.DataFrame({"id": [1, 2, 3], "store": ["a", "b", "a"]})
    >>> [tuple(r) for r in t.append(df, key="store")]  # (partition, first, last offset)
    [(0, 0, 1), (1, 0, 0)]
    >>> t.end_offsets()
    {0: 2, 1: 1}
    >>> t.read(0, 0, max_rows=10)["id"].to_list()
    [1, 3]
    >>> t.commit("billing", {0: 2})
    >>> t.committed("billing")
    {0: 2}
    >>> log.close()
    >>> home.cleanup()
    """

    def __init__(self, name: str, path: Path, *, durable: bool = True) -> None:
        self.name = name
        self.path = path
        self._durable = durable
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._cache: dict[int, tuple[int, int, pl.DataFrame]] = {}
        self._schema_blob: bytes | None = None
        self._empty: pl.DataFrame | None = None
        self._rr = 0
        self._last_retention = 0
        with sqlite_errors(f"topic {name!r} ({path})"):
            row = (
                self._db()
                .execute("SELECT partitions, retention_ms, retention_bytes, format FROM topic")
                .fetchone()
            )
        if row is None:
            raise SourceError(f"topic {name!r} ({path}) has no configuration row")
        self.partitions: int = row[0]
        self.retention_ms: int | None = row[1]
        self.retention_bytes: int | None = row[2]
        if row[3] > FORMAT:
            raise ConfigError(
                f"topic {name!r} uses storage format {row[3]}, this riverbed reads up to "
                f"{FORMAT}\n  hint: upgrade riverbed"
            )
        self._rr = os.getpid() % self.partitions
        self._repair_tail()

    # -- plumbing -----------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            self._conn = connect(self.path / DB_NAME, durable=self._durable)
            self._pid = os.getpid()
        return self._conn

    @contextlib.contextmanager
    def _txn(self, kind: str = "DEFERRED") -> Iterator[sqlite3.Connection]:
        """A transaction: ``IMMEDIATE`` to write, ``DEFERRED`` for a consistent read.

        A read nested in another transaction of this thread joins it.
        """
        with self._lock, sqlite_errors(f"topic {self.name!r} ({self.path})"):
            conn = self._db()
            if conn.in_transaction:
                assert kind == "DEFERRED", "a write cannot nest in another transaction"
                yield conn
                return
            conn.execute(f"BEGIN {kind}")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        """Close this topic's connection (it reopens on next use)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
            self._cache.clear()

    def __enter__(self) -> Topic:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Topic({self.name!r}, partitions={self.partitions})"

    def _check_partition(self, partition: int) -> None:
        if not 0 <= partition < self.partitions:
            raise ConfigError(
                f"topic {self.name!r} has partitions 0..{self.partitions - 1}, got partition {partition!r}"
            )

    # -- schema -------------------------------------------------------------------------

    def _load_schema(self, blob: bytes | None) -> None:
        if blob is not None and blob != self._schema_blob:
            self._schema_blob = blob
            self._empty = _codec.decode_schema(blob)

    @property
    def schema(self) -> pl.Schema | None:
        """The topic's schema, or None while nothing has been appended."""
        if self._empty is None:
            with self._txn() as conn:
                self._load_schema(conn.execute("SELECT schema FROM topic").fetchone()[0])
        return None if self._empty is None else self._empty.schema

    def _conform(self, df: pl.DataFrame) -> pl.DataFrame:
        """Check ``df`` against the topic's schema; reorder columns if only the order differs."""
        reserved = [c for c in METADATA_COLUMNS if c in df.columns]
        if reserved:
            raise PlanError(
                f"topic {self.name!r}: columns {reserved} are reserved for read metadata\n"
                "  hint: rename them before appending"
            )
        expected = self.schema
        if expected is None or df.schema == expected:
            return df
        if dict(df.schema) == dict(expected):
            return df.select(list(expected))
        self._raise_mismatch(expected, df.schema)
        raise AssertionError  # pragma: no cover

    def _raise_mismatch(self, expected: pl.Schema, got: pl.Schema) -> None:
        diff = "\n".join(f"    - {d}" for d in _codec.schema_differences(expected, got))
        raise PlanError(
            f"topic {self.name!r} keeps one schema and this append does not match it.\n"
            f"  topic schema:  {_codec.format_schema(expected)}\n"
            f"  append schema: {_codec.format_schema(got)}\n{diff}\n"
            "  hint: cast or select columns to the topic's schema, or write to a new topic"
        )

    # -- append -------------------------------------------------------------------------

    def append(
        self,
        df: pl.DataFrame,
        key: str | None = None,
        *,
        epoch: tuple[str, int] | None = None,
    ) -> list[AppendResult]:
        """Append ``df`` durably; return where its rows went, one entry per partition.

        Rows are routed by a stable hash of column ``key`` (rows with equal keys always land
        in the same partition, in order), or, without a key, round-robin: a small append goes
        whole to the next partition, a big one (8192+ rows) is cut into contiguous slices
        spread over the partitions. When this returns, the rows have survived a
        crash of this process. The first append fixes the topic's schema; later appends must
        match it (columns may come in another order).

        Parameters
        ----------
        df
            The records. Column names ``_partition``, ``_offset``, ``_timestamp`` are reserved.
        key
            Column to route by, or None for round-robin.
        epoch
            ``(writer_id, epoch)`` to record in the same transaction, so an exactly-once sink
            can later ask :meth:`last_epoch` what it has committed.

        Examples
        --------
        >>> import tempfile
        >>> from riverbed.eventlog import Log
        >>> home = tempfile.TemporaryDirectory()
        >>> t = Log(home.name).create_topic("clicks")
        >>> t.append(pl.DataFrame({"user": ["u1", "u2"]}))
        [AppendResult(partition=0, first_offset=0, last_offset=1)]
        >>> t.close(); home.cleanup()
        """
        if epoch is not None and (not isinstance(epoch[0], str) or not isinstance(epoch[1], int)):
            raise ConfigError(f"epoch must be (writer_id: str, epoch: int), got {epoch!r}")
        if df.height == 0:
            if epoch is not None:
                with self._txn("IMMEDIATE") as conn:
                    self._record_epoch(conn, epoch, _sqlite.now_ms())
            return []
        df = self._conform(df)
        with self._lock:
            if key is not None:
                pieces = _routing.split_by_key(df, key, self.partitions)
            else:
                pieces, self._rr = _routing.split_round_robin(df, self.partitions, self._rr)
        blobs = [(p, _codec.encode(chunk)) for p, frame in pieces for chunk in _chunks(frame)]
        schema_blob = _codec.encode_schema(df) if self._schema_blob is None else None
        now = _sqlite.now_ms()
        spans: dict[int, list[int]] = {}
        with self._txn("IMMEDIATE") as conn:
            stored = conn.execute("SELECT schema FROM topic").fetchone()[0]
            if stored is None:
                conn.execute("UPDATE topic SET schema = ?", (schema_blob,))
                stored = schema_blob
            elif stored is not None and stored != self._schema_blob:
                self._load_schema(stored)
                assert self._empty is not None
                if self._empty.schema != df.schema:
                    self._raise_mismatch(self._empty.schema, df.schema)
            for partition, enc in blobs:
                (base,) = conn.execute(
                    "SELECT next_offset FROM partitions WHERE partition = ?", (partition,)
                ).fetchone()
                conn.execute(
                    "INSERT INTO batches (partition, base_offset, count, append_ms, nbytes, "
                    "crc32, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (partition, base, enc.count, now, enc.nbytes, enc.crc32, memoryview(enc.data)),
                )
                conn.execute(
                    "UPDATE partitions SET next_offset = ? WHERE partition = ?",
                    (base + enc.count, partition),
                )
                span = spans.setdefault(partition, [base, base])
                span[1] = base + enc.count - 1
            if epoch is not None:
                self._record_epoch(conn, epoch, now)
        self._load_schema(stored)
        if self._has_retention() and now - self._last_retention >= _RETENTION_EVERY_MS:
            self.apply_retention(now)
        return [AppendResult(p, first, last) for p, (first, last) in sorted(spans.items())]

    @staticmethod
    def _record_epoch(conn: sqlite3.Connection, epoch: tuple[str, int], now: int) -> None:
        conn.execute(
            "INSERT INTO writers (writer, epoch, updated_ms) VALUES (?, ?, ?) "
            "ON CONFLICT (writer) DO UPDATE SET epoch = excluded.epoch, "
            "updated_ms = excluded.updated_ms",
            (epoch[0], epoch[1], now),
        )

    def last_epoch(self, writer: str) -> int | None:
        """The newest epoch recorded by :meth:`append` for ``writer``, if any."""
        with self._txn() as conn:
            row = conn.execute("SELECT epoch FROM writers WHERE writer = ?", (writer,)).fetchone()
        return None if row is None else int(row[0])

    # -- read ---------------------------------------------------------------------------

    def _empty_frame(self, metadata: bool) -> pl.DataFrame:
        self.schema  # noqa: B018 - loads the schema if another process set it
        base = pl.DataFrame() if self._empty is None else self._empty
        return _with_metadata(base, 0, 0, [], []) if metadata else base

    def _verified(
        self, partition: int, base: int, count: int, nbytes: int, crc: int, blob: bytes | None
    ) -> pl.DataFrame | str:
        """Decode a stored blob, or say what is wrong with it."""
        if blob is None:
            return "the blob is missing"
        if len(blob) != nbytes:
            return f"the blob has {len(blob)} bytes, expected {nbytes}"
        if _codec.checksum(blob) != crc:
            return "the blob's CRC32 does not match"
        try:
            df: pl.DataFrame = _codec.decode(blob)
        except Exception as exc:  # pyarrow raises several types on bad IPC
            return f"the blob does not decode: {exc}"
        if df.height != count:
            return f"the blob holds {df.height} rows, expected {count}"
        return df

    def read(
        self, partition: int, offset: int, max_rows: int = 100_000, *, metadata: bool = False
    ) -> pl.DataFrame:
        """Read up to ``max_rows`` records of ``partition`` starting at ``offset``.

        Returns an empty frame (with the topic's schema) at the end of the partition. With
        ``metadata=True`` the frame also has ``_partition`` (Int32), ``_offset`` (Int64) and
        ``_timestamp`` (append time, Datetime ms UTC).

        Raises
        ------
        SourceError
            When ``offset`` was removed by retention or lies past the end, or a stored batch
            is damaged (it is never returned).

        Examples
        --------
        >>> import tempfile
        >>> from riverbed.eventlog import Log
        >>> home = tempfile.TemporaryDirectory()
        >>> t = Log(home.name).create_topic("t")
        >>> _ = t.append(pl.DataFrame({"x": [10, 11, 12]}))
        >>> t.read(0, 1, metadata=True).select("x", "_offset").rows()
        [(11, 1), (12, 2)]
        >>> t.close(); home.cleanup()
        """
        self._check_partition(partition)
        if max_rows < 1:
            raise ConfigError(f"max_rows must be at least 1, got {max_rows}")
        where = f"topic {self.name!r} partition {partition}"
        pieces: list[pl.DataFrame] = []
        stamps: list[int] = []  # append time of each piece
        with self._txn() as conn:
            start, end = conn.execute(
                "SELECT start_offset, next_offset FROM partitions WHERE partition = ?",
                (partition,),
            ).fetchone()
            if offset < start:
                raise SourceError(
                    f"{where}: offset {offset} was removed by retention; the partition now "
                    f"starts at {start}\n  hint: read from {start} (start_offsets())"
                )
            if offset > end:
                raise SourceError(
                    f"{where}: offset {offset} is past the end of the partition ({end})\n"
                    "  hint: the tail may have been cut after damage; read from end_offsets()"
                )
            if offset == end:
                return self._empty_frame(metadata)
            first = conn.execute(
                "SELECT MAX(base_offset) FROM batches WHERE partition = ? AND base_offset <= ?",
                (partition, offset),
            ).fetchone()[0]
            metas = conn.execute(
                "SELECT base_offset, count, append_ms, nbytes, crc32 FROM batches "
                "WHERE partition = ? AND base_offset >= ? ORDER BY base_offset",
                (partition, first if first is not None else offset),
            )
            want, pos = max_rows, offset
            for base, count, append_ms, nbytes, crc in metas:
                if base > pos:
                    raise SourceError(f"{where}: offsets {pos}..{base - 1} are missing")
                df = self._batch(conn, partition, base, count, nbytes, crc)
                piece = df.slice(pos - base, want)
                pieces.append(piece)
                stamps.append(append_ms)
                pos += piece.height
                want -= piece.height
                if want == 0 or pos >= end:
                    break
            metas.close()
        if not pieces:
            raise SourceError(f"{where}: no batch holds offset {offset} (end {end})")
        out = pieces[0] if len(pieces) == 1 else pl.concat(pieces, rechunk=False)
        if metadata:
            out = _with_metadata(out, partition, offset, stamps, [p.height for p in pieces])
        return out

    def _batch(
        self, conn: sqlite3.Connection, partition: int, base: int, count: int, nbytes: int, crc: int
    ) -> pl.DataFrame:
        cached = self._cache.get(partition)
        if cached is not None and cached[0] == base and cached[1] == crc:
            return cached[2]
        row = conn.execute(
            "SELECT data FROM batches WHERE partition = ? AND base_offset = ?", (partition, base)
        ).fetchone()
        got = self._verified(partition, base, count, nbytes, crc, None if row is None else row[0])
        if isinstance(got, str):
            raise SourceError(
                f"topic {self.name!r} partition {partition}: the batch at offsets "
                f"{base}..{base + count - 1} is damaged ({got}); it is not served.\n"
                "  hint: reopen the topic to cut a damaged tail; damage further back needs "
                "the topic restored from a copy"
            )
        self._cache[partition] = (base, crc, got)
        return got

    def read_all(self, *, metadata: bool = False) -> pl.DataFrame:
        """Every record currently kept, partition by partition, in offset order."""
        starts, ends = self.start_offsets(), self.end_offsets()
        frames = [
            self.read(p, starts[p], ends[p] - starts[p], metadata=metadata)
            for p in range(self.partitions)
            if ends[p] > starts[p]
        ]
        if not frames:
            return self._empty_frame(metadata)
        return pl.concat(frames, rechunk=False)

    # -- offsets and groups -------------------------------------------------------------

    def end_offsets(self) -> dict[int, int]:
        """The next offset to be written, per partition."""
        with self._txn() as conn:
            rows = conn.execute("SELECT partition, next_offset FROM partitions").fetchall()
        return {int(p): int(o) for p, o in rows}

    def start_offsets(self) -> dict[int, int]:
        """The oldest offset still kept, per partition."""
        with self._txn() as conn:
            rows = conn.execute("SELECT partition, start_offset FROM partitions").fetchall()
        return {int(p): int(o) for p, o in rows}

    def commit(self, group: str, offsets: Mapping[int, int]) -> None:
        """Record consumer group ``group``'s next offset to read, per partition.

        Positions persist across processes and restarts. An offset may be at most the
        partition's end offset.
        """
        if not isinstance(group, str) or not group:
            raise ConfigError(f"a consumer group needs a non-empty name, got {group!r}")
        for p in offsets:
            self._check_partition(p)
        now = _sqlite.now_ms()
        with self._txn("IMMEDIATE") as conn:
            ends = dict(conn.execute("SELECT partition, next_offset FROM partitions").fetchall())
            for p, off in offsets.items():
                if not 0 <= off <= ends[p]:
                    raise ConfigError(
                        f"topic {self.name!r} partition {p}: group {group!r} cannot commit "
                        f"offset {off}; expected 0..{ends[p]} (the end offset)"
                    )
                conn.execute(
                    "INSERT INTO groups (grp, partition, position, updated_ms) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (grp, partition) DO UPDATE SET "
                    "position = excluded.position, updated_ms = excluded.updated_ms",
                    (group, p, off, now),
                )

    def committed(self, group: str) -> dict[int, int]:
        """Group ``group``'s committed positions (partitions it never committed are absent)."""
        with self._txn() as conn:
            rows = conn.execute("SELECT partition, position FROM groups WHERE grp = ?", (group,)).fetchall()
        return {int(p): int(o) for p, o in sorted(rows)}

    def groups(self) -> list[str]:
        """Names of the consumer groups that have committed positions here."""
        with self._txn() as conn:
            rows = conn.execute("SELECT DISTINCT grp FROM groups ORDER BY grp").fetchall()
        return [r[0] for r in rows]

    # -- retention, integrity, description -----------------------------------------------

    def _has_retention(self) -> bool:
        return self.retention_ms is not None or self.retention_bytes is not None

    def apply_retention(self, now_ms: int | None = None) -> int:
        """Drop the oldest batches beyond the retention limits; return records removed.

        By age: a prefix of batches appended before ``now - retention_ms`` is dropped. By
        size: the oldest batches are dropped until each partition's stored bytes are at most
        ``retention_bytes``. Whole batches go; the start offsets move forward. Appends also
        run this at most once a second when the topic has a retention limit.
        """
        now = _sqlite.now_ms() if now_ms is None else now_ms
        self._last_retention = now
        if not self._has_retention():
            return 0
        removed = 0
        with self._txn("IMMEDIATE") as conn:
            for p, start, end in conn.execute(
                "SELECT partition, start_offset, next_offset FROM partitions"
            ).fetchall():
                new_start = start
                if self.retention_ms is not None:
                    (keep,) = conn.execute(
                        "SELECT MIN(base_offset) FROM batches WHERE partition = ? AND append_ms >= ?",
                        (p, now - self.retention_ms),
                    ).fetchone()
                    new_start = max(new_start, end if keep is None else keep)
                if self.retention_bytes is not None:
                    total = 0
                    for base, count, nbytes in conn.execute(
                        "SELECT base_offset, count, nbytes FROM batches WHERE partition = ? "
                        "ORDER BY base_offset DESC",
                        (p,),
                    ):
                        total += nbytes
                        if total > self.retention_bytes:
                            new_start = max(new_start, base + count)
                            break
                if new_start > start:
                    conn.execute(
                        "DELETE FROM batches WHERE partition = ? AND base_offset < ?",
                        (p, new_start),
                    )
                    conn.execute(
                        "UPDATE partitions SET start_offset = ? WHERE partition = ?",
                        (new_start, p),
                    )
                    removed += new_start - start
        if removed:
            with self._lock, sqlite_errors(f"topic {self.name!r}"):
                self._db().execute("PRAGMA incremental_vacuum")
        return removed

    def _check_batches(self, partition: int, newest: int | None) -> int | None:
        """Verify the newest ``newest`` batches (all if None); the first bad base offset."""
        limit = -1 if newest is None else newest
        bad: int | None = None
        with self._txn() as conn:
            rows = conn.execute(
                "SELECT base_offset, count, nbytes, crc32, data FROM batches "
                "WHERE partition = ? ORDER BY base_offset DESC LIMIT ?",
                (partition, limit),
            )
            for base, count, nbytes, crc, blob in rows:
                if isinstance(self._verified(partition, base, count, nbytes, crc, blob), str):
                    bad = base
        return bad

    def _cut(self, partition: int, at: int, reason: str) -> None:
        """Delete the batch at ``at`` and all after it, if it is still there and still bad."""
        with self._txn("IMMEDIATE") as conn:
            row = conn.execute(
                "SELECT count, nbytes, crc32, data FROM batches WHERE partition = ? AND base_offset = ?",
                (partition, at),
            ).fetchone()
            if row is None or not isinstance(self._verified(partition, at, *row), str):
                return  # another process cut (and maybe appended) since we looked
            conn.execute("DELETE FROM batches WHERE partition = ? AND base_offset >= ?", (partition, at))
            conn.execute(
                "UPDATE partitions SET next_offset = ?, start_offset = MIN(start_offset, ?) "
                "WHERE partition = ?",
                (at, at, partition),
            )
        self._cache.pop(partition, None)
        logger.warning(
            "topic %r partition %d: %s; cut the log at offset %d", self.name, partition, reason, at
        )

    def _repair_tail(self) -> None:
        """Cut a damaged tail: the newest bad batch among the last few, and all after it.

        A tail this process already checked (same newest batch, same checksum) is not read
        again, so opening many readers of one topic stays cheap.
        """
        with self._txn() as conn:
            rows = conn.execute(
                "SELECT partition, base_offset, crc32 FROM batches b WHERE base_offset = "
                "(SELECT MAX(base_offset) FROM batches WHERE partition = b.partition)"
            ).fetchall()
        newest = {p: (base, crc) for p, base, crc in rows}
        for p in range(self.partitions):
            key = (str(self.path), p)
            if p in newest and _CHECKED_TAILS.get(key) == newest[p]:
                continue
            bad = self._check_batches(p, _TAIL_CHECK)
            if bad is not None:
                self._cut(p, bad, "damaged batch at the tail")
            elif p in newest:
                _CHECKED_TAILS[key] = newest[p]

    def verify(self, *, repair: bool = False) -> dict[int, int]:
        """Check every stored batch; return ``{partition: first damaged offset}``.

        With ``repair=True`` each damaged partition is cut at its first damaged batch (losing
        every batch after it). Reads never serve a damaged batch either way.
        """
        damaged: dict[int, int] = {}
        for p in range(self.partitions):
            bad = self._check_batches(p, None)
            if bad is not None:
                damaged[p] = bad
                if repair:
                    self._cut(p, bad, "damaged batch found by verify()")
        return damaged

    def describe(self) -> TopicDescription:
        """Per partition: start and end offsets, stored bytes, batches and lag per group."""
        with self._txn() as conn:
            parts = conn.execute(
                "SELECT p.partition, p.start_offset, p.next_offset, "
                "COALESCE(SUM(b.nbytes), 0), COUNT(b.base_offset) FROM partitions p "
                "LEFT JOIN batches b ON b.partition = p.partition "
                "GROUP BY p.partition ORDER BY p.partition"
            ).fetchall()
            positions = conn.execute("SELECT grp, partition, position FROM groups").fetchall()
            self._load_schema(conn.execute("SELECT schema FROM topic").fetchone()[0])
        groups = sorted({g for g, _, _ in positions})
        committed = {(g, p): off for g, p, off in positions}
        infos = [
            PartitionInfo(
                partition=p,
                start_offset=start,
                end_offset=end,
                size_bytes=size,
                batches=n,
                lag={g: end - committed.get((g, p), start) for g in groups},
            )
            for p, start, end, size, n in parts
        ]
        return TopicDescription(
            name=self.name,
            partitions=infos,
            groups=groups,
            retention_ms=self.retention_ms,
            retention_bytes=self.retention_bytes,
            schema=None if self._empty is None else self._empty.schema,
        )


def _chunks(df: pl.DataFrame) -> Iterator[pl.DataFrame]:
    """Zero-copy slices of ``df`` of at most ~64 MiB each (one stored blob per slice)."""
    size = int(df.estimated_size())
    if size <= _MAX_BLOB_BYTES or df.height <= 1:
        yield df
        return
    rows = max(1, df.height * _MAX_BLOB_BYTES // size)
    for start in range(0, df.height, rows):
        yield df.slice(start, rows)


def _with_metadata(
    df: pl.DataFrame, partition: int, first: int, stamps: list[int], heights: list[int]
) -> pl.DataFrame:
    """Add ``_partition``, ``_offset`` (contiguous from ``first``) and ``_timestamp``.

    ``stamps[i]`` is the append time of the ``heights[i]`` rows of the i-th stored batch read.
    """
    if len(set(stamps)) <= 1:
        stamp = pl.lit(stamps[0] if stamps else 0, dtype=pl.Int64)
    else:
        runs = pl.DataFrame({"ms": stamps, "n": heights}, schema={"ms": pl.Int64, "n": pl.Int64})
        stamp = pl.lit(runs.select(pl.col("ms").repeat_by("n").explode()).to_series())
    return df.with_columns(
        pl.lit(partition, dtype=pl.Int32).alias("_partition"),
        pl.int_range(first, first + df.height, dtype=pl.Int64).alias("_offset"),
        stamp.cast(pl.Datetime("ms", "UTC")).alias("_timestamp"),
    )
