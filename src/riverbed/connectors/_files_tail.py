"""The tail of one growing JSON-lines or CSV file, followed like ``tail -F``."""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import polars as pl

from riverbed._errors import ConfigError, SourceError
from riverbed.connectors._files_fs import is_remote
from riverbed.connectors._textparse import read_csv_header, split_lines
from riverbed.connectors.base import SourceReader
from riverbed.connectors.files import FileSource

_LOG = logging.getLogger("riverbed.files")


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


MAX_PENDING_LINES = 10_000
"""A CSV record still open after this many lines is taken as a quote left open on its first."""


def _first_csv_record(data: bytes, sep: str) -> list[int]:
    """Where the first CSV record of ``data`` ends, when counting quotes says it is still open:
    a quote inside an unquoted field (``a,b"c``) does not open one; a malformed record (``"a"b``),
    or one open for ``MAX_PENDING_LINES`` lines, ends at its first line (a bad record).
    Empty if the record is genuinely still open (wait for more)."""
    lines = split_lines(data.decode("latin-1"))  # one char per byte: offsets stay exact
    if lines and not lines[-1].endswith("\n"):
        lines.pop()  # not complete yet
    used = 0

    def feed() -> Iterator[str]:
        nonlocal used
        for line in lines:
            used += 1
            yield line

    old = csv.field_size_limit(2**31 - 1)
    try:
        next(csv.reader(feed(), delimiter=sep, strict=True))
    except csv.Error as exc:
        if "end of data" in str(exc) and len(lines) < MAX_PENDING_LINES:
            return []
        used = 1
    except StopIteration:
        return []
    finally:
        csv.field_size_limit(old)
    return [sum(len(line) for line in lines[:used])]


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
        self.stop: int | None = None  # a stream job's end (stop_at_end): a byte offset
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
            if self.stop is not None:
                if self.offset >= self.stop:
                    return None
                size = min(size, self.stop)
            if size > self.offset:
                self.fh.seek(self.offset)
                data = self.fh.read(min(size - self.offset, window))
                ends = record_ends(data, self.fmt == "csv")
                if not ends and self.fmt == "csv" and b"\n" in data:
                    ends = _first_csv_record(data, self.src.separator)
                if ends:
                    # the header is one record more than the rows asked for
                    take = max_rows + (1 if self.fmt == "csv" and self.header is None else 0)
                    cut = ends[min(take, len(ends)) - 1]
                    return self._parse(data[:cut], data.count(b"\n", 0, cut))
                if len(data) == window:  # a record longer than the window: widen it
                    window *= 2
                    continue
                if self.stop is not None and size == self.stop:
                    return None  # only a record cut at the end is left: the input ends here
            elif size < self.offset or self._rotated():
                if size < self.offset:
                    self._restart("the file was truncated")
                continue
            if time.monotonic() >= deadline:
                return self._empty()
            time.sleep(min(self.src.poll, max(deadline - time.monotonic(), 0.0)))

    def end_position(self) -> int:
        """The byte size of the followed file now (0 when it does not exist yet)."""
        try:
            return os.stat(self.src.path).st_size
        except FileNotFoundError:
            return 0

    def stop_at(self, position: Any) -> None:
        """End at byte offset ``position`` of the followed file."""
        self.stop = int(position)

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
