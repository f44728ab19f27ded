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
from riverbed.connectors._files_fs import format_of, is_remote, list_files
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
        self.buffer: pl.DataFrame | None = None
        self.dead: list[pl.DataFrame] = []
        self.batches: Iterator[pl.DataFrame] | None = None
        self.last_list = 0.0
        self.want: str | None = src.format or _format_or_none(src.path)
        self.warned: set[str] = set()
        self.preloaded: dict[str, tuple[pl.DataFrame, pl.DataFrame | None]] = {}
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

    def _next_file(self) -> str | None:
        if not self.queue:
            if self.src.watch:
                now = time.monotonic()
                if now - self.last_list < self.src.poll:
                    return None
                self.last_list = now
                try:
                    found = [
                        f for f in list_files(self.src.path, self.src.storage_options) if self._accept(f)
                    ]
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
        """Parse ``file`` together with the queued files after it (same format, up to 16 MiB
        in all): many small files cost one vectorized parse, not one each."""
        group, size = [file], os.path.getsize(file)
        for f in self.queue:
            if len(group) >= 1000 or size > 16 << 20 or is_remote(f) or self.src.fmt(f) != fmt:
                break
            group.append(f)
            size += os.path.getsize(f)
        try:
            results = self.src.read_text_files(group, self.event_time)
        except RecordError:
            raise
        except SourceError:  # one file of the group does not fit: read them one by one
            return self.src.read_file(file, self.full_schema, self.event_time)
        self.preloaded.update(zip(group[1:], results[1:], strict=True))
        return results[0]

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
            return df.select(names)  # the files may order their columns differently

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
                self.current, self.row, self.buffer = None, 0, None
                continue
            if self.buffer.height == 0:
                continue
            out = self.buffer.head(max(max_rows, 1) - taken)
            self.buffer = self.buffer.slice(out.height)
            self.row += out.height
            taken += out.height
            outs.append(out)
        return outs[0] if len(outs) == 1 else pl.concat(outs, how="vertical_relaxed")

    def snapshot(self) -> Any:
        return {"done": list(self.done), "file": self.current, "row": self.row}

    def drain_dead_letters(self) -> pl.DataFrame | None:
        if not self.dead:
            return None
        out = pl.concat(self.dead)
        self.dead = []
        return out


def _format_or_none(path: str) -> str | None:
    try:
        return format_of(path)
    except ConfigError:
        return None


def record_ends(data: bytes, csv_quotes: bool) -> list[int]:
    """Offsets just past each complete record in ``data``: after each newline, except (CSV)
    a newline inside a quoted field, where the count of quotes so far is odd."""
    ends = []
    pos = data.find(b"\n")
    if not csv_quotes or b'"' not in data:
        while pos >= 0:
            ends.append(pos + 1)
            pos = data.find(b"\n", pos + 1)
        return ends
    quotes, start = 0, 0
    while pos >= 0:
        quotes += data.count(b'"', start, pos)
        if quotes % 2 == 0:
            ends.append(pos + 1)
        start = pos + 1
        pos = data.find(b"\n", start)
    return ends


class _TailReader(SourceReader):
    """Follows one growing JSON-lines or CSV file, like ``tail -F``: only complete records are
    read; a line longer than the read window widens it; a truncated file, or one replaced by a
    new file (rename and recreate), is read again from its start, with a warning."""

    def __init__(self, src: FileSource, resume: Any, event_time: str | None = None) -> None:
        if is_remote(src.path):
            raise ConfigError(f"tail=True needs a local file, got {src.path!r}")
        self.src = src
        self.event_time = event_time
        self.fmt = src.fmt(src.path)
        if self.fmt == "parquet":
            raise ConfigError("tail=True follows JSON-lines or CSV files, not Parquet")
        state = resume or {}
        self.offset = int(state.get("offset", 0))
        self.line = int(state.get("line", 1))
        self.header: list[str] | None = state.get("header")
        self.inode: int | None = state.get("inode")
        self.fh: Any = None
        self.dead: list[pl.DataFrame] = []

    def _restart(self, why: str) -> None:
        _LOG.warning("%s: %s; reading it again from the start", self.src.path, why)
        self.offset, self.line, self.header = 0, 1, None

    def _open(self) -> bool:
        """Open the followed file if it exists (True), checking it is the one we were reading."""
        try:
            fh = open(self.src.path, "rb")  # noqa: SIM115 - held open while following
        except FileNotFoundError:
            return False
        ino = os.fstat(fh.fileno()).st_ino
        if self.inode is not None and ino != self.inode and self.offset:
            self._restart("the file was replaced while the job was down")
        self.fh, self.inode = fh, ino
        return True

    def _rotated(self) -> bool:
        """At the end of the open file: has the path been truncated or replaced?"""
        assert self.fh is not None
        try:
            st = os.stat(self.src.path)
        except FileNotFoundError:
            return False  # removed: keep waiting for a new one
        if st.st_ino != self.inode:
            self.fh.close()
            self.fh, self.inode = None, None
            self._restart("the file was replaced (rotated)")
            return True
        if st.st_size < self.offset:
            self._restart("the file was truncated")
            return True
        return False

    def next_batch(self, max_rows: int, timeout: float) -> pl.DataFrame | None:
        deadline = time.monotonic() + timeout
        window = max(max_rows, 1) * 512
        while True:
            if self.fh is None and not self._open():
                if time.monotonic() >= deadline:
                    return self._empty()
                time.sleep(min(self.src.poll, max(deadline - time.monotonic(), 0.0)))
                continue
            size = os.fstat(self.fh.fileno()).st_size
            if size > self.offset:
                self.fh.seek(self.offset)
                data = self.fh.read(min(size - self.offset, window))
                ends = record_ends(data, self.fmt == "csv")
                if ends:
                    # the header is one record more than the rows asked for
                    take = max_rows + (1 if self.fmt == "csv" and self.header is None else 0)
                    cut = ends[min(take, len(ends)) - 1]
                    return self._parse(data[:cut], data.count(b"\n", 0, cut))
                if len(data) == window:  # a record longer than the window: widen it
                    window *= 2
                    continue
            elif size < self.offset or self._rotated():
                if size < self.offset:
                    self._restart("the file was truncated")
                continue
            if time.monotonic() >= deadline:
                return self._empty()
            time.sleep(min(self.src.poll, max(deadline - time.monotonic(), 0.0)))

    def _empty(self) -> pl.DataFrame:
        return pl.DataFrame(schema=self.src.schema_ or {})

    def _parse(self, chunk: bytes, lines: int) -> pl.DataFrame:
        first_line = self.line
        if self.offset == 0 and chunk.startswith(b"\xef\xbb\xbf"):
            chunk, skipped = chunk[3:], 3
        else:
            skipped = 0
        self.offset += len(chunk) + skipped
        self.line += lines
        if self.fmt == "csv" and self.header is None:
            first, _, chunk = chunk.partition(b"\n")
            self.header = read_csv_header(first.decode("utf-8", "replace"), self.src.separator)
            first_line += 1
            if not chunk:
                return self._empty()
        if self.src.schema_ is not None:
            good, dead = self.src._parse(
                chunk,
                self.src.path,
                self.fmt,
                first_line=first_line,
                header=self.header,
                event_time=self.event_time,
            )
            if dead is not None:
                self.dead.append(dead)
            return good
        try:
            if self.fmt == "csv":
                return pl.read_csv(
                    chunk, has_header=False, new_columns=self.header, separator=self.src.separator
                )
            return pl.read_ndjson(chunk)
        except pl.exceptions.PolarsError as exc:
            where, record = f"lines {first_line}-{self.line - 1}", ""
            if self.fmt == "jsonl":  # name the first line that does not parse
                for n, line in enumerate(chunk.decode("utf-8", "replace").splitlines()):
                    try:
                        json.loads(line)
                    except ValueError:
                        where, record = f"line {first_line + n}", f"\n  record: {line[:200]}"
                        break
            raise SourceError(
                f"{self.src.path}: {where}: {str(exc).splitlines()[0]}{record}"
                "\n  hint: declare schema=... with on_error='dead_letter' to divert bad records"
            ) from None

    def snapshot(self) -> Any:
        return {"offset": self.offset, "line": self.line, "header": self.header, "inode": self.inode}

    def drain_dead_letters(self) -> pl.DataFrame | None:
        if not self.dead:
            return None
        out = pl.concat(self.dead)
        self.dead = []
        return out

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None
