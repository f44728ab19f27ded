"""Files as a sink: Parquet, CSV or JSON lines; one file or a directory of part files.

Every file is written under a temporary name and renamed into place on commit, so a reader
never sees half a file. Local paths and any fsspec URL work.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import quote

import polars as pl

from riverbed._errors import ConfigError, SinkError
from riverbed._faults import kill_point
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
    """Writes one run. Exactly-once per epoch (with the stream executor's replay):

    * a local CSV or JSON-lines file gets each epoch appended (fsync'd), then a marker
      ``.NAME.riverbed.json`` records the epoch and the file's size; at open, bytes past the
      recorded size (an epoch whose commit did not finish) are cut off;
    * a directory gets one part file per epoch (``part-EPOCH-JOB.ext``, staged and renamed),
      then the marker ``.riverbed-STEP.json`` records the epoch; at open, this job's parts
      newer than the marker are deleted (the replay writes them again);
    * a Parquet file or a remote single file is rewritten whole at each commit (it cannot be
      appended to); prefer a directory for long stream jobs.
    """

    def __init__(self, sink: FileSink, ctx: SinkContext) -> None:
        self.sink = sink
        self.ctx = ctx
        self.fmt = sink.fmt()
        self.fs, self.root = _fs(sink.path, sink.storage_options)
        self.staged: list[pl.DataFrame] = []
        self.written: list[pl.DataFrame] = []  # rewritten single file: everything of this run
        self.commits = 0
        self.published: list[str] = []
        self.local = not is_remote(sink.path)
        self.appends = self.local and not sink.is_dir and self.fmt != "parquet"
        self._cleaned = False
        if self.local:  # fail before any sink of the job commits
            check_directory(
                f"sink {sink.describe()}", os.path.join(self.root, "part") if sink.is_dir else self.root
            )
        if self.appends and ctx.job_id is not None:
            self._cut_uncommitted()
        elif sink.mode == "append" and not sink.is_dir and self.fs.exists(self.root):
            with self.fs.open(self.root, "rb") as fh:
                data = fh.read()
            if self.fmt == "parquet":
                self.written.append(pl.read_parquet(data))
            elif self.fmt == "csv":
                self.written.append(pl.read_csv(data))
            else:
                self.written.append(pl.read_ndjson(data))

    # -- the epoch marker ------------------------------------------------------------------
    @property
    def marker(self) -> str:
        if self.sink.is_dir:
            return f"{self.root.rstrip('/')}/.riverbed-{self.ctx.pipeline}-{self.ctx.step}.json"
        parent, name = os.path.split(self.root)
        return os.path.join(parent, f".{name}.riverbed.json")

    def _read_marker(self) -> dict[str, Any] | None:
        try:
            with self.fs.open(self.marker, "rb") as fh:
                doc: dict[str, Any] = json.loads(fh.read())
        except (FileNotFoundError, ValueError):
            return None
        if doc.get("pipeline") != self.ctx.pipeline or doc.get("step") != self.ctx.step:
            return None
        return doc

    def _write_marker(self, doc: dict[str, Any]) -> None:
        doc = {"pipeline": self.ctx.pipeline, "step": self.ctx.step, **doc}
        data = json.dumps(doc).encode()
        if not self.local:
            self.fs.pipe_file(self.marker, data)
            return
        tmp = f"{self.marker}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.marker)

    def last_committed_epoch(self) -> int | None:
        doc = self._read_marker()
        return None if doc is None else int(doc["epoch"])

    def _cut_uncommitted(self) -> None:
        """Drop bytes appended by a commit that did not finish (its epoch will be replayed)."""
        doc = self._read_marker()
        if doc is None or not os.path.exists(self.root):
            return
        if os.path.getsize(self.root) > int(doc["size"]):
            with open(self.root, "r+b") as fh:
                fh.truncate(int(doc["size"]))

    def _clean_parts(self) -> None:
        """Delete this job's part files newer than its last committed epoch."""
        self._cleaned = True
        if self.ctx.job_id is None:
            return
        last = self.last_committed_epoch()
        mine = f"-{self.ctx.job_id[:8]}."
        for path in self._existing_parts():
            name = Path(path).name
            if mine in name:
                epoch = int(name.split("-")[1])
                if last is None or epoch > last:
                    self.fs.rm(path)

    # -- writing -------------------------------------------------------------------------
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

    def _first(self, epoch: int) -> bool:
        """Whether this commit is the job's first epoch (where "replace" replaces)."""
        return self.commits == 0 and epoch <= self.ctx.first_epoch

    def commit(self, epoch: int) -> None:
        if self.appends:
            self._append(epoch)
        elif not self.sink.is_dir:
            if any(f.height for f in self.staged) or self.commits == 0:
                self.written = [_concat([*self.written, *self.staged])]
                self.staged = []
                self._publish(self.written[0], self.root)
        else:
            self._commit_part(epoch)
        self.staged = []
        self.commits += 1

    def _append(self, epoch: int) -> None:
        df = _concat(self.staged)  # staged rows are dropped by commit() once this succeeded
        replace = self.sink.mode == "replace" and self._first(epoch)
        if replace or not os.path.exists(self.root):
            self._publish(df, self.root)
        elif df.height:
            header = self.fmt == "csv" and os.path.getsize(self.root) == 0
            buf = io.BytesIO()
            if self.fmt == "csv":
                df.write_csv(buf, include_header=header)
            else:
                df.write_ndjson(buf)
            before = os.path.getsize(self.root)
            try:
                with open(self.root, "ab") as fh:
                    fh.write(buf.getvalue())
                    fh.flush()
                    kill_point("file-appended")
                    os.fsync(fh.fileno())
            except OSError as exc:
                with contextlib.suppress(OSError), open(self.root, "r+b") as fh:
                    fh.truncate(before)  # no half epoch left for a retry to append after
                raise SinkError(f"cannot append to {self.root!r}: {exc}") from None
        if self.ctx.job_id is not None:  # a checkpointed job: record the epoch for its replay
            self._write_marker({"epoch": epoch, "size": os.path.getsize(self.root)})

    def _commit_part(self, epoch: int) -> None:
        if not self._cleaned:
            self._clean_parts()
        first = self._first(epoch)
        old = self._existing_parts() if first and self.sink.mode == "replace" else []
        df = _concat(self.staged)
        if df.height:
            ext = _EXT[self.fmt]
            token = (self.ctx.job_id or uuid.uuid4().hex)[:8]
            name = f"part-{epoch:08d}-{token}.{ext}"
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
        if self.ctx.job_id is not None:
            self.fs.makedirs(self.root.rstrip("/"), exist_ok=True)
            self._write_marker({"epoch": epoch})

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
