"""Readers of the files source in stream mode: a replay of files in name and row order
(optionally watching for new files), and the tail of one growing JSON-lines or CSV file."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import polars as pl

from riverbed._errors import ConfigError, SourceError
from riverbed.connectors.base import SourceReader
from riverbed.connectors.files import FileSource, is_remote


class _FilesReader(SourceReader):
    """Replays files in name order, rows in file order; optionally watches for new files."""

    def __init__(
        self, src: FileSource, resume: Any, schema: pl.Schema, columns: list[str] | None = None
    ) -> None:
        self.src = src
        self.full_schema = schema
        # projection: Parquet row groups decode only the columns the pipeline uses
        self.columns = [c for c in schema.names() if c in columns] if columns else None
        self.schema = pl.Schema({c: schema[c] for c in self.columns}) if self.columns else schema
        state = resume or {}
        self.done: list[str] = list(state.get("done", []))
        self.current: str | None = state.get("file")
        self.row: int = int(state.get("row", 0))
        self.buffer: pl.DataFrame | None = None
        self.dead: list[pl.DataFrame] = []
        self.batches: Iterator[pl.DataFrame] | None = None
        self.last_list = 0.0

    def _next_file(self) -> str | None:
        if self.src.watch:
            now = time.monotonic()
            if now - self.last_list < self.src.poll:
                return None
            self.last_list = now
            try:
                files = self.src.files()
            except SourceError:
                return None
        else:
            files = self.src.files()
        seen = set(self.done)
        for f in files:
            if f not in seen:
                return f
        return None

    def _load(self, file: str) -> None:
        fmt = self.src.fmt(file)
        if fmt == "parquet" and not is_remote(file) and self.src.schema_ is None:
            self.batches = self._parquet_batches(file, self.row)
            self.buffer = None
            return
        df, dead = self.src.read_file(file, self.full_schema)
        if dead is not None and self.row == 0:
            self.dead.append(dead)
        if self.columns:
            df = df.select(self.columns)
        self.buffer = df.slice(self.row)
        self.batches = None

    def _parquet_batches(self, file: str, skip: int) -> Iterator[pl.DataFrame]:
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

        def read(rg: int) -> pl.DataFrame:
            df = pl.from_arrow(pf.read_row_group(rg, columns=self.columns))
            assert isinstance(df, pl.DataFrame)
            return df

        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(read, groups[0][0]) if groups else None
            for i, (_, offset) in enumerate(groups):
                assert pending is not None
                df = pending.result()
                pending = pool.submit(read, groups[i + 1][0]) if i + 1 < len(groups) else None
                yield df.slice(offset)

    def next_batch(self, max_rows: int, timeout: float) -> pl.DataFrame | None:
        deadline = time.monotonic() + timeout
        while True:
            if self.current is None:
                nxt = self._next_file()
                if nxt is None:
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
            out = self.buffer.head(max_rows)
            self.buffer = self.buffer.slice(out.height)
            self.row += out.height
            return out

    def snapshot(self) -> Any:
        return {"done": list(self.done), "file": self.current, "row": self.row}

    def drain_dead_letters(self) -> pl.DataFrame | None:
        if not self.dead:
            return None
        out = pl.concat(self.dead)
        self.dead = []
        return out


class _TailReader(SourceReader):
    """Follows one growing JSON-lines or CSV file: only complete lines are read."""

    def __init__(self, src: FileSource, resume: Any) -> None:
        if is_remote(src.path):
            raise ConfigError(f"tail=True needs a local file, got {src.path!r}")
        self.src = src
        self.fmt = src.fmt(src.path)
        if self.fmt == "parquet":
            raise ConfigError("tail=True follows JSON-lines or CSV files, not Parquet")
        state = resume or {}
        self.offset = int(state.get("offset", 0))
        self.line = int(state.get("line", 1))
        self.header: list[str] | None = state.get("header")
        self.dead: list[pl.DataFrame] = []

    def next_batch(self, max_rows: int, timeout: float) -> pl.DataFrame | None:
        deadline = time.monotonic() + timeout
        path = self.src.path
        while True:
            try:
                size = os.path.getsize(path)
            except FileNotFoundError:
                size = 0
            if size > self.offset:
                with open(path, "rb") as fh:
                    fh.seek(self.offset)
                    data = fh.read(min(size - self.offset, max(max_rows, 1) * 512))
                end = data.rfind(b"\n")
                if end >= 0:
                    chunk = data[: end + 1]
                    lines = chunk.count(b"\n")
                    if lines > max_rows:  # cut at max_rows lines
                        pos = -1
                        for _ in range(max_rows):
                            pos = chunk.index(b"\n", pos + 1)
                        chunk, lines = chunk[: pos + 1], max_rows
                    return self._parse(chunk, lines)
            if time.monotonic() >= deadline:
                return pl.DataFrame(schema=self.src.schema_ or {})
            time.sleep(min(self.src.poll, max(deadline - time.monotonic(), 0.0)))

    def _parse(self, chunk: bytes, lines: int) -> pl.DataFrame:
        first_line = self.line
        self.offset += len(chunk)
        self.line += lines
        if self.fmt == "csv" and self.header is None:
            first, _, rest = chunk.partition(b"\n")
            self.header = first.decode().strip().split(self.src.separator)
            chunk, first_line = rest, first_line + 1
            if not chunk:
                return pl.DataFrame(schema=self.src.schema_ or {})
        if self.src.schema_ is not None:
            good, dead = self.src._parse(
                chunk, self.src.path, self.fmt, first_line=first_line, header=self.header
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
        return {"offset": self.offset, "line": self.line, "header": self.header}

    def drain_dead_letters(self) -> pl.DataFrame | None:
        if not self.dead:
            return None
        out = pl.concat(self.dead)
        self.dead = []
        return out
