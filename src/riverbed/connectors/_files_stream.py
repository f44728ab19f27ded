"""Readers of the files source in stream mode: a replay of files in name and row order
(optionally watching for new files), and the tail of one growing JSON-lines or CSV file."""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import polars as pl

from riverbed._errors import ConfigError, RecordError, SourceError
from riverbed.connectors._files_fs import Format, LocalDirLister, format_of, is_remote, list_files
from riverbed.connectors._textparse import read_csv_header
from riverbed.connectors.base import SourceReader, dead_letters
from riverbed.connectors.files import FileSource, check_parquet_columns

_LOG = logging.getLogger("riverbed.files")


class _FilesReader(SourceReader):
    """Replays files in name order, rows in file order; optionally watches for new files.

    A directory is listed once per poll and every new file is queued, so a backlog of many small
    files is read at full speed; one micro-batch may hold rows of several files. In a watched
    directory a file of another format is skipped with a warning, and a file that cannot be
    read fails the job naming it (or becomes one dead letter under ``on_error="dead_letter"``).
    """

    def __init__(
        self,
        src: FileSource,
        resume: Any,
        schema: pl.Schema,
        columns: list[str] | None = None,
        event_time: str | None = None,
    ) -> None:
        self.src = src
        self.event_time = event_time
        self.full_schema = schema
        # projection: Parquet row groups decode only the columns the pipeline uses
        self.columns = [c for c in schema.names() if c in columns] if columns else None
        self.schema = pl.Schema({c: schema[c] for c in self.columns}) if self.columns else schema
        state = resume or {}
        self.done: list[str] = list(state.get("done", []))
        self.seen: set[str] = set(self.done)
        self.queue: deque[str] = deque()
        self.listed = False
        self.current: str | None = state.get("file")
        self.row: int = int(state.get("row", 0))
        # a large text file is read in chunks: where the current chunk starts, and the row
        # count (of the file) at its first row
        self.chunk: dict[str, Any] | None = state.get("chunk")
        self.buffer: pl.DataFrame | None = None
        self.dead: list[pl.DataFrame] = []
        self.batches: Iterator[pl.DataFrame] | None = None
        self.last_list = 0.0
        self.want: str | None = src.format or _format_or_none(src.path)
        self.warned: set[str] = set()
        self.preloaded: dict[str, tuple[pl.DataFrame, pl.DataFrame | None]] = {}
        self.lister: LocalDirLister | None = None
        if self.current is not None:
            self.seen.add(self.current)

    def _accept(self, file: str) -> bool:
        """In a watched directory: is ``file`` of the format being read? (warns once if not)"""
        fmt = _format_or_none(file)
        if self.want is None and fmt is not None:
            self.want = fmt
        if fmt is None or self.src.format is not None or fmt == self.want:
            return True
        if file not in self.warned:
            self.warned.add(file)
            _LOG.warning("%s: skipped: a %s file in a watched directory of %s files", file, fmt, self.want)
        return False

    def _list(self) -> list[str]:
        """The watched files; a local directory is walked again only when it changed."""
        path = self.src.path
        if self.lister is None and not is_remote(path) and os.path.isdir(path.removeprefix("file://")):
            self.lister = LocalDirLister(path.removeprefix("file://"))
        if self.lister is not None:
            return self.lister()
        return list_files(path, self.src.storage_options)

    def _next_file(self) -> str | None:
        if not self.queue:
            if self.src.watch:
                now = time.monotonic()
                if now - self.last_list < self.src.poll:
                    return None
                self.last_list = now
                try:
                    found = [f for f in self._list() if self._accept(f)]
                except SourceError:
                    return None
            elif self.listed:
                return None
            else:
                found, self.listed = self.src.files(), True
            for f in found:
                if f not in self.seen:
                    self.seen.add(f)
                    self.queue.append(f)
        return self.queue.popleft() if self.queue else None

    def _load(self, file: str) -> bool:
        """Open ``file`` for reading from ``self.row``; False if it was turned into a dead letter."""
        try:
            self._open_file(file)
            return True
        except SourceError as exc:
            if not self.src.watch or self.src.on_error != "dead_letter" or isinstance(exc, RecordError):
                raise
            self.dead.append(
                dead_letters(
                    [{"source": file, "position": "file", "field": None, "error": str(exc), "raw": ""}]
                )
            )
            self.buffer, self.batches = pl.DataFrame(schema=self.schema), None
            return False

    def _open_file(self, file: str) -> None:
        fmt = self.src.fmt(file)
        if fmt == "parquet" and not is_remote(file) and self.src.schema_ is None:
            order = check_parquet_columns(file, self.full_schema)
            self.batches = self._parquet_batches(file, self.row, order)
            self.buffer = None
            return
        if self.src._text_mode(fmt) and _chunkable(file):
            self.batches = self._text_batches(file, fmt)
            self.buffer = None
            return
        if file in self.preloaded:
            df, dead = self.preloaded.pop(file)
        elif self.src._text_mode(fmt) and self.queue and not is_remote(file):
            df, dead = self._preload(file, fmt)
        else:
            df, dead = self.src.read_file(file, self.full_schema, self.event_time)
        if dead is not None and self.row == 0:
            self.dead.append(dead)
        if self.columns:
            df = df.select(self.columns)
        self.buffer = df.slice(self.row)
        self.batches = None

    def _preload(self, file: str, fmt: str) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        """Parse ``file`` together with the queued files after it (same format, up to
        ``CHUNK_BYTES`` in all): many small files cost one vectorized parse, not one each."""
        group, size = [file], os.path.getsize(file)
        for f in self.queue:
            if len(group) >= 1000 or is_remote(f) or self.src.fmt(f) != fmt:
                break
            n = os.path.getsize(f)
            if size + n > CHUNK_BYTES:
                break
            group.append(f)
            size += n
        try:
            results = self.src.read_text_files(group, self.event_time)
        except RecordError:
            raise
        except SourceError:  # one file of the group does not fit: read them one by one
            return self.src.read_file(file, self.full_schema, self.event_time)
        self.preloaded.update(zip(group[1:], results[1:], strict=True))
        return results[0]

    def _record_ends(self, data: bytes, fmt: Format) -> list[int]:
        from riverbed.connectors._files_tail import _first_csv_record, record_ends

        ends = record_ends(data, fmt == "csv")
        if not ends and fmt == "csv" and b"\n" in data:  # a stray quote must not run to the end
            ends = _first_csv_record(data, self.src.separator)
        return ends

    def _text_batches(self, file: str, fmt: Format) -> Iterator[pl.DataFrame]:
        """A large text file in chunks of about ``CHUNK_BYTES`` cut at record ends, so memory
        stays bounded; a chunk's dead letters are emitted with its first rows (once: a resumed
        chunk whose rows were partly read does not repeat them)."""
        state = self.chunk if self.chunk is not None and self.row else None
        with open(file, "rb") as fh:
            if state is None:
                offset, line, header = 0, 1, None
                if fmt == "csv":
                    first = fh.readline()
                    header = read_csv_header(first.decode("utf-8", "replace"), self.src.separator)
                    offset, line = len(first), 2
                state = {"offset": offset, "line": line, "header": header, "row0": 0}
            offset, line, header = state["offset"], state["line"], state["header"]
            skip = self.row - state["row0"]
            row0 = state["row0"]
            while True:
                fh.seek(offset)
                data = fh.read(CHUNK_BYTES)
                if not data:
                    return
                at_end = len(data) < CHUNK_BYTES
                ends = self._record_ends(data, fmt)
                while not ends and not at_end:  # a record longer than the chunk: extend it
                    more = fh.read(CHUNK_BYTES)
                    data += more
                    at_end = len(more) < CHUNK_BYTES
                    ends = self._record_ends(data, fmt)
                cut = len(data) if at_end else ends[-1]  # at the end: a last line without newline too
                chunk = data[:cut]
                self.chunk = {"offset": offset, "line": line, "header": header, "row0": row0}
                good, dead = self.src._parse(
                    chunk, file, fmt, first_line=line, header=header, event_time=self.event_time
                )
                if dead is not None and skip == 0:
                    self.dead.append(dead)
                if self.columns:
                    good = good.select(self.columns)
                offset, line = offset + cut, line + chunk.count(b"\n")
                row0 += good.height
                yield good.slice(skip)
                skip = 0

    def _parquet_batches(self, file: str, skip: int, order: list[str]) -> Iterator[pl.DataFrame]:
        """Row groups in order, the next one decoded in a background thread meanwhile."""
        from concurrent.futures import ThreadPoolExecutor

        import pyarrow.parquet as pq

        pf = pq.ParquetFile(file)
        groups = []
        for rg in range(pf.num_row_groups):
            n = pf.metadata.row_group(rg).num_rows
            if skip >= n:
                skip -= n
                continue
            groups.append((rg, skip))
            skip = 0
        names = self.columns or order

        def read(rg: int) -> pl.DataFrame:
            df = pl.from_arrow(pf.read_row_group(rg, columns=names))
            assert isinstance(df, pl.DataFrame)
            return _conform(df.select(names), self.schema, file)  # columns by name, types checked

        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(read, groups[0][0]) if groups else None
            for i, (_, offset) in enumerate(groups):
                assert pending is not None
                df = pending.result()
                pending = pool.submit(read, groups[i + 1][0]) if i + 1 < len(groups) else None
                yield df.slice(offset)

    def next_batch(self, max_rows: int, timeout: float) -> pl.DataFrame | None:
        deadline = time.monotonic() + timeout
        outs: list[pl.DataFrame] = []
        taken = 0
        while taken < max(max_rows, 1):
            if self.current is None:
                nxt = self._next_file()
                if nxt is None:
                    if outs:
                        break
                    if not self.src.watch:
                        return None
                    if time.monotonic() >= deadline:
                        return pl.DataFrame(schema=self.schema)
                    time.sleep(min(self.src.poll, max(deadline - time.monotonic(), 0)))
                    continue
                self.current, self.row = nxt, 0
                self._load(nxt)
            elif self.buffer is None and self.batches is None:
                self._load(self.current)
            if self.batches is not None and (self.buffer is None or self.buffer.height == 0):
                self.buffer = next(self.batches, None)
                if self.buffer is None:
                    self.batches = None
                    self.buffer = pl.DataFrame(schema=self.schema)
            assert self.buffer is not None
            if self.buffer.height == 0 and self.batches is None:
                self.done.append(self.current)
                self.current, self.row, self.buffer, self.chunk = None, 0, None, None
                continue
            if self.buffer.height == 0:
                continue
            out = self.buffer.head(max(max_rows, 1) - taken)
            if self.event_time is not None and self.src.on_error == "fail":
                _check_event_time(out, self.event_time, self.current, self.row)
            self.buffer = self.buffer.slice(out.height)
            self.row += out.height
            taken += out.height
            outs.append(out)
        return outs[0] if len(outs) == 1 else pl.concat(outs, how="vertical_relaxed")

    def snapshot(self) -> Any:
        state: dict[str, Any] = {"done": list(self.done), "file": self.current, "row": self.row}
        if self.chunk is not None and self.current is not None:
            state["chunk"] = self.chunk
        return state

    def drain_dead_letters(self) -> pl.DataFrame | None:
        if not self.dead:
            return None
        out = pl.concat(self.dead)
        self.dead = []
        return out


def _conform(df: pl.DataFrame, schema: pl.Schema, file: str) -> pl.DataFrame:
    """``df`` with the source's column types: numbers widen, anything else that differs from
    the first file is an error naming this file (batch mode refuses it too)."""
    casts = []
    for name, dtype in df.schema.items():
        want = schema.get(name)
        if want is None or want == dtype:
            continue
        if dtype.is_numeric() and want.is_numeric():
            casts.append(pl.col(name).cast(want))
            continue
        raise SourceError(
            f"{file}: column {name!r} is {dtype} here but {want} in the source's schema (its first "
            "file).\n  hint: give every file the same types, or declare schema= on rb.files(...)"
        )
    return df.with_columns(casts) if casts else df


def _check_event_time(df: pl.DataFrame, column: str, file: str, first_row: int) -> None:
    """Under ``on_error="fail"``: a null event time (Parquet, inferred text) stops the job,
    naming the file and row (text with a declared schema is checked, by line, when parsed)."""
    if column not in df.columns:
        return
    nulls = df.get_column(column).is_null()
    if not nulls.any():
        return
    i = int(nulls.arg_true()[0])
    raw = json.dumps(df.row(i, named=True), default=str)
    position = f"row {first_row + i + 1}"
    raise RecordError(
        f"{file}: {position}, column {column!r}: the event time {column!r} is missing (null)\n"
        f"  record: {raw[:200]}\n"
        "  hint: fix the record, or read with on_error='dead_letter' (and a schema) to divert it",
        source=file,
        position=position,
        field=column,
        raw=raw,
    )


CHUNK_BYTES = 16 << 20
"""Stream mode reads a text file larger than this in chunks of about this size."""


def _chunkable(file: str) -> bool:
    """A local, uncompressed text file larger than ``CHUNK_BYTES``."""
    if is_remote(file) or os.path.getsize(file) <= CHUNK_BYTES:
        return False
    with open(file, "rb") as fh:
        magic = fh.read(4)
    return not (magic[:2] == b"\x1f\x8b" or magic == b"\x28\xb5\x2f\xfd")


def _format_or_none(path: str) -> str | None:
    try:
        return format_of(path)
    except ConfigError:
        return None
