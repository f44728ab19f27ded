"""Files as a sink: Parquet, CSV or JSON lines; one file or a directory of part files.

Every file is written under a temporary name and renamed into place on commit, so a reader
never sees half a file. Local paths and any fsspec URL work.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import quote

import polars as pl

from riverbed._errors import ConfigError, SinkError
from riverbed.connectors._files_fs import Format, _fs, format_of, is_remote
from riverbed.connectors._table import check_directory
from riverbed.connectors.base import Capabilities, Sink, SinkContext, SinkWriter

_EXT = {"parquet": "parquet", "csv": "csv", "jsonl": "jsonl"}


def _concat(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """Concatenate, keeping the schema even when every frame is empty."""
    rows = [f for f in frames if f.height]
    if rows:
        return pl.concat(rows, how="diagonal_relaxed")
    return frames[0] if frames else pl.DataFrame()


def _hive_value(value: Any) -> str:
    """A partition value as a directory name, as Hive, Spark and Polars write it: percent-encoded
    (so ``/`` cannot nest directories), null as ``__HIVE_DEFAULT_PARTITION__``."""
    if value is None:
        return "__HIVE_DEFAULT_PARTITION__"
    return quote(str(value), safe="")


def _write(df: pl.DataFrame, fh: Any, fmt: Format) -> None:
    if fmt == "parquet":
        df.write_parquet(fh)
    elif fmt == "csv":
        df.write_csv(fh)
    else:
        df.write_ndjson(fh)


@dataclass(frozen=True)
class FileSink(Sink):
    """Files as a sink. Build it with :func:`riverbed.file_sink` or a path URI."""

    path: str
    format: Format | None = None
    mode: Literal["replace", "append"] = "replace"
    partition_by: tuple[str, ...] = ()
    storage_options: dict[str, Any] | None = field(default=None, hash=False)

    capabilities: ClassVar[Capabilities] = Capabilities(bounded=True, unbounded=True)

    @property
    def is_dir(self) -> bool:
        return self.path.endswith("/") or bool(self.partition_by)

    def fmt(self) -> Format:
        if self.format is not None:
            return self.format
        if self.is_dir:
            raise ConfigError(f"sink directory {self.path!r} needs a format.\n  hint: format='parquet'")
        return format_of(self.path)

    def describe(self) -> str:
        kind = "directory" if self.is_dir else "file"
        return f"{self.fmt()} {kind} {self.path}"

    def open(self, ctx: SinkContext) -> SinkWriter:
        return _FileWriter(self, ctx)


class _FileWriter(SinkWriter):
    def __init__(self, sink: FileSink, ctx: SinkContext) -> None:
        self.sink = sink
        self.ctx = ctx
        self.fmt = sink.fmt()
        self.fs, self.root = _fs(sink.path, sink.storage_options)
        self.staged: list[pl.DataFrame] = []
        self.written: list[pl.DataFrame] = []  # single file: everything of this run
        self.commits = 0
        self.published: list[str] = []
        if not is_remote(sink.path):  # fail before any sink of the job commits
            check_directory(
                f"sink {sink.describe()}", os.path.join(self.root, "part") if sink.is_dir else self.root
            )
        if sink.mode == "append" and not sink.is_dir and self.fs.exists(self.root):
            with self.fs.open(self.root, "rb") as fh:
                data = fh.read()
            if self.fmt == "parquet":
                self.written.append(pl.read_parquet(data))
            elif self.fmt == "csv":
                self.written.append(pl.read_csv(data))
            else:
                self.written.append(pl.read_ndjson(data))

    def write(self, df: pl.DataFrame) -> None:
        self.staged.append(df)

    def _publish(self, df: pl.DataFrame, target: str) -> None:
        parent = target.rsplit("/", 1)[0] if "/" in target else "."
        tmp = f"{parent}/.{Path(target).name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            self.fs.makedirs(parent, exist_ok=True)
            with self.fs.open(tmp, "wb") as fh:
                _write(df, fh, self.fmt)
            if is_remote(self.sink.path):
                self.fs.mv(tmp, target)
            else:
                os.replace(tmp, target)
        except BaseException as exc:
            with contextlib.suppress(Exception):  # leave no half-written temp file behind
                if self.fs.exists(tmp):
                    self.fs.rm(tmp)
            if isinstance(exc, OSError):
                raise SinkError(f"cannot write {target!r}: {exc}") from None
            raise

    def commit(self, epoch: int) -> None:
        if not self.sink.is_dir:
            if any(f.height for f in self.staged) or self.commits == 0:
                self.written = [_concat([*self.written, *self.staged])]
                self.staged = []
                self._publish(self.written[0], self.root)
            self.commits += 1
            return
        first = self.commits == 0
        self.commits += 1
        old = self._existing_parts() if first and self.sink.mode == "replace" else []
        df = _concat(self.staged)
        self.staged = []
        if df.height:
            ext = _EXT[self.fmt]
            name = f"part-{epoch:08d}-{uuid.uuid4().hex[:8]}.{ext}"
            if self.sink.partition_by:
                for key, part in df.partition_by(
                    list(self.sink.partition_by), as_dict=True, include_key=False
                ).items():
                    sub = "/".join(
                        f"{c}={_hive_value(v)}" for c, v in zip(self.sink.partition_by, key, strict=True)
                    )
                    target = f"{self.root.rstrip('/')}/{sub}/{name}"
                    self._publish(part, target)
                    self.published.append(target)
            else:
                target = f"{self.root.rstrip('/')}/{name}"
                self._publish(df, target)
                self.published.append(target)
        for path in old:
            if path not in self.published:
                self.fs.rm(path)

    def _existing_parts(self) -> list[str]:
        root = self.root.rstrip("/")
        if not self.fs.exists(root):
            return []
        return [p for p in self.fs.find(root) if Path(p).name.startswith("part-")]

    def close(self) -> None:
        self.staged = []


def file_sink(
    path: str | os.PathLike[str],
    *,
    format: Format | None = None,
    mode: Literal["replace", "append"] = "replace",
    partition_by: str | list[str] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> FileSink:
    """Write Parquet, CSV or JSON lines to one file, or part files in a directory.

    Parameters
    ----------
    path
        ``out/report.parquet`` (one file), ``out/report/`` or an existing directory (part
        files; give ``format``), or an fsspec URL such as ``s3://bucket/out/report.parquet``.
    mode
        ``"replace"`` (default) the file or the directory's part files; ``"append"`` keeps them.
    partition_by
        Directory sinks: Hive-style sub-directories ``col=value/`` per key.

    Examples
    --------
    >>> import riverbed as rb
    >>> rb.file_sink("out/report/", format="parquet").describe()
    'parquet directory out/report/'
    """
    if mode not in ("replace", "append"):
        raise ConfigError(f"file sink mode must be 'replace' or 'append', got {mode!r}")
    parts = (partition_by,) if isinstance(partition_by, str) else tuple(partition_by or ())
    text = os.fspath(path)
    if not text.endswith("/") and not is_remote(text) and os.path.isdir(text):
        text += "/"  # an existing local directory (a Path cannot end with '/')
    sink = FileSink(text, format, mode, parts, storage_options)
    sink.fmt()
    return sink
