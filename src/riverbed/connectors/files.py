"""Files as a source: CSV, JSON lines and Parquet; one file, a glob or a directory.

Local paths are read with Polars' native readers; any other fsspec URL (``s3://``,
``gs://``, ``hdfs://``, ``memory://`` ...) is listed and opened through fsspec.

In batch mode the whole input is one LazyFrame. In stream mode the files are one partition,
replayed in name order and row order; ``watch=True`` keeps looking for new files in the
directory, ``tail=True`` follows a growing JSON-lines or CSV file.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import polars as pl

from riverbed._errors import ConfigError, SourceError
from riverbed.connectors._files_fs import Format, _fs, format_of, is_remote, list_files
from riverbed.connectors._textparse import (
    FILE,
    OnError,
    TextOptions,
    parse_csv_pieces,
    parse_csv_text,
    parse_json_pieces,
    parse_json_text,
)
from riverbed.connectors.base import (
    Capabilities,
    Source,
    SourceContext,
    SourceReader,
)


def fit(name: str, have: pl.DataType, want: pl.DataType) -> pl.Expr:
    """Convert column ``name`` from ``have`` to the declared ``want`` (text is parsed into
    dates and times: Polars 2 no longer casts strings to temporal types)."""
    col = pl.col(name)
    if have == want:
        return col
    if have == pl.String and isinstance(want, pl.Datetime):
        return col.str.to_datetime(time_unit=want.time_unit or "us", time_zone=want.time_zone)
    if have == pl.String and want == pl.Date:
        return col.str.to_date()
    if have == pl.String and want == pl.Time:
        return col.str.to_time()
    return col.cast(want)


def _globby(path: str) -> bool:
    """Whether a (listed, literal) path holds characters Polars would take as a glob."""
    return any(ch in path for ch in "*?[")


def check_parquet_columns(file: str, schema: pl.Schema) -> list[str]:
    """The columns of ``schema``, after checking a local Parquet file has exactly those (in any
    order), as the batch reader requires; raises :class:`SourceError` naming the file if not."""
    try:
        if _globby(file):  # a literal name: do not let Polars expand it
            with open(file, "rb") as fh:
                have = pl.read_parquet_schema(fh)
        else:
            have = pl.read_parquet_schema(file)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise SourceError(
            f"{file}: cannot read as Parquet: {str(exc).splitlines()[0]}\n"
            "  hint: is the file complete? write files atomically (to a temporary name, then rename)"
        ) from None
    missing = [c for c in schema.names() if c not in have]
    extra = [c for c in have if c not in schema]
    if missing or extra:
        what = "; ".join(
            part
            for part in (
                f"it lacks column(s) {missing}" if missing else "",
                f"it has column(s) {extra} that the first file has not" if extra else "",
            )
            if part
        )
        raise SourceError(
            f"{file}: its columns differ from the other files': {what}.\n"
            f"  expected: {schema.names()}\n"
            "  hint: declare schema={...} to read only the columns you need from every file"
        )
    for name, want in schema.items():
        got = have[name]
        if got != want and not (got.is_numeric() and want.is_numeric()):
            raise SourceError(
                f"{file}: column {name!r} is {got} here but {want} in the source's schema (its "
                "first file).\n  hint: give every file the same types, or declare schema= on "
                "rb.files(...)"
            )
    return schema.names()


def _decompress(data: bytes, file: str) -> bytes:
    """Gzip- or zstd-compressed text (``.csv.gz``, ``.jsonl.zst``), as Polars' readers accept it."""
    if data[:2] == b"\x1f\x8b":
        import gzip

        return gzip.decompress(data)
    if data[:4] == b"\x28\xb5\x2f\xfd":
        try:
            import zstandard
        except ImportError:
            raise ConfigError(
                f"{file} is zstd-compressed; reading it with a declared schema needs the "
                "'zstandard' package.\n  hint: pip install zstandard"
            ) from None
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)  # type: ignore[no-any-return]
    return data


@dataclass(frozen=True)
class FileSource(Source):
    """Files as a source. Build it with :func:`riverbed.files`."""

    path: str
    format: Format | None = None
    schema_: dict[str, pl.DataType] | None = field(default=None, hash=False)
    on_error: OnError = "fail"
    separator: str = ","
    storage_options: dict[str, Any] | None = field(default=None, hash=False)
    watch: bool = False
    tail: bool = False
    poll_interval: float | None = None
    formats: tuple[str, ...] | None = None

    capabilities: ClassVar[Capabilities] = Capabilities(bounded=True, unbounded=True, replayable=True)

    @property
    def poll(self) -> float:
        """Seconds between looks for new data (tail: 5 ms; watch: 200 ms)."""
        if self.poll_interval is not None:
            return self.poll_interval
        return 0.005 if self.tail else 0.2

    def caps(self) -> Capabilities:
        """A watched directory or a followed file never ends: stream mode only."""
        if self.tail or self.watch:
            return Capabilities(bounded=False, unbounded=True, replayable=True)
        return self.capabilities

    def describe(self) -> str:
        mode = " (watch)" if self.watch else " (tail)" if self.tail else ""
        return f"files {self.path}{mode}"

    # -- discovery ---------------------------------------------------------------------
    def files(self) -> list[str]:
        """The files to read. A directory or glob must hold one format (or pass ``format``)."""
        found = list_files(self.path, self.storage_options)
        by_format: dict[str | None, list[str]] = {}
        for f in found:
            try:
                by_format.setdefault(format_of(f), []).append(f)
            except ConfigError:
                by_format.setdefault(None, []).append(f)
        if self.format is not None:
            if self.format in by_format and len(by_format) > 1:
                return sorted(by_format[self.format] + by_format.get(None, []))
            return found
        known = sorted(k for k in by_format if k is not None)
        if len(known) > 1:
            counts = ", ".join(f"{len(by_format[k])} {k}" for k in known)
            raise ConfigError(
                f"{self.path!r} holds files of several formats ({counts}).\n"
                f"  hint: pass format='{known[0]}', or a glob such as "
                f"'{self.path.rstrip('/')}/**/*.{known[0]}'"
            )
        return found

    def fmt(self, file: str | None = None) -> Format:
        if self.format is not None:
            return self.format
        try:
            return format_of(file or self.path)
        except ConfigError:
            if file is None:
                return format_of(self.files()[0])
            raise

    def _open(self, file: str) -> Any:
        if is_remote(file):
            fs, root = _fs(file, self.storage_options)
            with fs.open(root, "rb") as fh:
                return io.BytesIO(fh.read())
        if _globby(file):  # a literal name with [ or *: do not let Polars expand it
            return io.BytesIO(Path(file).read_bytes())
        return file

    def _scan_native(self, file: str | list[str]) -> pl.LazyFrame:
        """Lazy scan with Polars' reader (inferred schema)."""
        files = [file] if isinstance(file, str) else file
        fmt = self.fmt(files[0])
        remote = is_remote(files[0])
        try:
            if remote or (fmt == "jsonl" and any(_globby(f) for f in files)):
                frames = [self._read_whole(f, fmt) for f in files]
                return pl.concat(frames, how="vertical_relaxed").lazy()
            if fmt == "parquet":  # the files are listed already: names are literal
                return pl.scan_parquet(files, glob=False)
            if fmt == "csv":
                return pl.scan_csv(files, separator=self.separator, infer_schema_length=10_000, glob=False)
            return pl.scan_ndjson(files, infer_schema_length=10_000)
        except pl.exceptions.PolarsError as exc:
            raise SourceError(f"{self.path}: cannot read: {str(exc).splitlines()[0]}") from None

    def _read_whole(self, file: str, fmt: Format) -> pl.DataFrame:
        src = self._open(file)
        try:
            if fmt == "parquet":
                return pl.read_parquet(src)
            if fmt == "csv":
                return pl.read_csv(src, separator=self.separator, infer_schema_length=10_000)
            return pl.read_ndjson(src, infer_schema_length=10_000)
        except pl.exceptions.PolarsError as exc:
            raise SourceError(
                f"{file}: cannot read as {fmt}: {str(exc).splitlines()[0]}\n"
                "  hint: declare schema=... with on_error='dead_letter' to divert bad records"
            ) from None

    # -- schema ------------------------------------------------------------------------
    def schema(self, ctx: SourceContext) -> pl.Schema:
        if self.schema_ is not None:
            return pl.Schema(self.schema_)
        try:
            files = self.files()
        except SourceError as exc:
            if not self.watch:
                raise
            raise SourceError(
                f"{exc}\n  hint: a watched directory may start empty if you declare its "
                "schema: rb.files(..., watch=True, schema={...})"
            ) from None
        try:
            return self._scan_native(files[0]).collect_schema()
        except pl.exceptions.PolarsError as exc:
            raise SourceError(f"{files[0]}: cannot infer schema: {exc}") from None

    def null_count(self, column: str) -> int | None:
        """Nulls in ``column`` from Parquet statistics alone (local files), or None if unknown.

        Lets the batch executor skip a pass over the data looking for missing event times.
        """
        import pyarrow.parquet as pq

        try:
            files = self.files()
            if is_remote(files[0]) or any(self.fmt(f) != "parquet" for f in files):
                return None
            total = 0
            for f in files:
                meta = pq.ParquetFile(f).metadata
                names = [meta.schema.column(i).name for i in range(meta.num_columns)]
                if column not in names:
                    return None
                j = names.index(column)
                for rg in range(meta.num_row_groups):
                    stats = meta.row_group(rg).column(j).statistics
                    if stats is None or not stats.has_null_count:
                        return None
                    total += stats.null_count
            return total
        except (OSError, ValueError, SourceError, ConfigError):
            return None

    def _text_mode(self, fmt: Format) -> bool:
        """Declared schema over text files: parse record by record with line numbers."""
        return self.schema_ is not None and fmt in ("csv", "jsonl")

    def read_file(
        self, file: str, schema: pl.Schema, event_time: str | None = None
    ) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        """Read one whole file into (rows, dead letters)."""
        fmt = self.fmt(file)
        if self._text_mode(fmt):
            src = self._open(file)
            data = src.getvalue() if isinstance(src, io.BytesIO) else Path(src).read_bytes()
            return self._parse(_decompress(data, file), file, fmt, first_line=1, event_time=event_time)
        df = self._read_whole(file, fmt)
        return self._conform(df, schema, file), None

    def read_text_files(
        self, files: list[str], event_time: str | None = None
    ) -> list[tuple[pl.DataFrame, pl.DataFrame | None]]:
        """Read several whole text files of one format (declared schema) in one vectorized
        parse; (rows, dead letters) for each file, in order."""
        fmt = self.fmt(files[0])
        schema = pl.Schema(self.schema_ or {})
        options = TextOptions(formats=self.formats, event_time=event_time)
        pieces = []
        for f in files:
            src = self._open(f)
            data = src.getvalue() if isinstance(src, io.BytesIO) else Path(src).read_bytes()
            pieces.append((f, _decompress(data, f), 1))
        if fmt == "csv":
            good, dead = parse_csv_pieces(
                pieces, schema, on_error=self.on_error, separator=self.separator, options=options
            )
        else:
            good, dead = parse_json_pieces(pieces, schema, on_error=self.on_error, options=options)
        goods = good.partition_by(FILE, as_dict=True, include_key=False)
        deads = dead.partition_by(FILE, as_dict=True, include_key=False) if dead is not None else {}
        return [(goods.get((i,), good.clear().drop(FILE)), deads.get((i,))) for i in range(len(files))]

    def _parse(
        self,
        data: bytes,
        file: str,
        fmt: Format,
        *,
        first_line: int,
        header: list[str] | None = None,
        event_time: str | None = None,
    ) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        schema = pl.Schema(self.schema_ or {})
        options = TextOptions(formats=self.formats, event_time=event_time)
        if fmt == "csv":
            return parse_csv_text(
                data,
                schema,
                source=file,
                first_line=first_line + (1 if header is None else 0),
                on_error=self.on_error,
                separator=self.separator,
                has_header=header is None,
                header=header,
                options=options,
            )
        return parse_json_text(
            data, schema, source=file, first_line=first_line, on_error=self.on_error, options=options
        )

    def _groups(self, files: list[str], budget: int = 64 << 20) -> list[list[str]]:
        """Consecutive local files in groups of up to ``budget`` bytes, parsed together."""
        groups: list[list[str]] = []
        size = budget
        for f in files:
            n = os.path.getsize(f) if not is_remote(f) else budget
            if size + n > budget or not groups:
                groups.append([])
                size = 0
            groups[-1].append(f)
            size += n
        return groups

    def _conform(self, df: pl.DataFrame, schema: pl.Schema, file: str) -> pl.DataFrame:
        if df.schema == schema:
            return df
        missing = [c for c in schema.names() if c not in df.columns]
        if missing:
            raise SourceError(f"{file}: column(s) {missing} are missing.\n  the file has: {df.columns}")
        try:
            return df.select(fit(c, df.schema[c], t) for c, t in schema.items())
        except pl.exceptions.PolarsError as exc:
            raise SourceError(f"{file}: does not fit the schema: {str(exc).splitlines()[0]}") from None

    def _scan_declared(self, file: str, schema: pl.Schema) -> pl.LazyFrame:
        """One file's scan converted to the declared schema (names the file if it cannot)."""
        lf = self._scan_native(file)
        try:
            have = lf.collect_schema()
        except pl.exceptions.PolarsError as exc:
            raise SourceError(f"{file}: cannot read: {str(exc).splitlines()[0]}") from None
        missing = [c for c in schema.names() if c not in have]
        if missing:
            raise SourceError(f"{file}: column(s) {missing} are missing.\n  the file has: {have.names()}")
        return lf.select(fit(c, have[c], t) for c, t in schema.items())

    # -- batch fast path ---------------------------------------------------------------
    def scan(self, ctx: SourceContext) -> tuple[pl.LazyFrame, pl.DataFrame | None] | None:
        files = self.files()
        schema = self.schema(ctx)
        fmt = self.fmt(files[0])
        progress = ctx.progress
        if self._text_mode(fmt) or is_remote(files[0]):
            frames, dead = [], []
            task = progress.task(f"read {self.path}", total=len(files)) if progress else None
            for group in self._groups(files) if self._text_mode(fmt) else [[f] for f in files]:
                if len(group) > 1:
                    results = self.read_text_files(group, ctx.event_time)
                else:
                    results = [self.read_file(group[0], schema, ctx.event_time)]
                for good, bad in results:
                    frames.append(good)
                    if bad is not None:
                        dead.append(bad)
                if task is not None:
                    task.advance(len(group))
            letters = pl.concat(dead) if dead else None
            return pl.concat(frames, how="vertical_relaxed").lazy(), letters
        if self.schema_ is not None:
            # cast file by file: the files may differ (Int32 here, Int64 there) and still fit
            scan = pl.concat([self._scan_declared(f, schema) for f in files], how="vertical")
        else:
            if fmt == "parquet" and len(files) > 1:  # name a file that does not fit (footers only)
                for f in files:
                    check_parquet_columns(f, schema)
            scan = self._scan_native(files)
        if progress is None or len(files) < 2:
            return scan, None
        return self._progress_scan(files, schema, progress), None

    def _progress_scan(self, files: list[str], schema: pl.Schema, progress: Any) -> pl.LazyFrame:
        """A LazyFrame read file by file, advancing a progress bar (projection and predicate
        pushdown still apply to each file)."""
        from polars.io.plugins import register_io_source

        sizes = [max(os.path.getsize(f), 1) for f in files]
        task = progress.task(f"read {len(files)} files", total=sum(sizes), unit="bytes")
        counted: set[str] = set()  # the plan may scan twice (rows and row count): count once

        def gen(
            with_columns: list[str] | None,
            predicate: pl.Expr | None,
            n_rows: int | None,
            batch_size: int | None,
        ) -> Iterator[pl.DataFrame]:
            left = n_rows
            for f, size in zip(files, sizes, strict=True):
                lf = self._scan_declared(f, schema) if self.schema_ is not None else self._scan_native(f)
                if predicate is not None:
                    lf = lf.filter(predicate)
                if with_columns is not None:
                    lf = lf.select(with_columns)
                if left is not None:
                    lf = lf.head(left)
                df = lf.collect()
                if f not in counted:
                    counted.add(f)
                    task.advance(size)
                if left is not None:
                    left -= df.height
                yield df
                if left is not None and left <= 0:
                    break

        return register_io_source(gen, schema=schema)

    # -- stream ------------------------------------------------------------------------
    def partitions(self, ctx: SourceContext) -> list[str]:
        return ["0"]

    def open(self, partition: str, resume: Any, ctx: SourceContext) -> SourceReader:
        from riverbed.connectors._files_stream import _FilesReader
        from riverbed.connectors._files_tail import _TailReader

        if self.tail:
            return _TailReader(self, resume, event_time=ctx.event_time)
        return _FilesReader(
            self, resume, schema=self.schema(ctx), columns=ctx.columns, event_time=ctx.event_time
        )


def _declared_schema(schema: Any) -> dict[str, pl.DataType]:
    """A declared schema with every type fully specified (``pl.Datetime`` -> ``Datetime("us")``)."""
    out: dict[str, pl.DataType] = {}
    for name, dtype in dict(schema).items():
        try:
            resolved = dtype() if isinstance(dtype, type) else dtype
            pl.Series([], dtype=resolved)
        except (TypeError, ValueError, pl.exceptions.PolarsError) as exc:
            raise ConfigError(
                f"schema: column {name!r} has type {dtype!r}, which is not a complete Polars type "
                f"({exc}).\n  hint: e.g. pl.Int64, pl.Datetime('ms'), pl.List(pl.String)"
            ) from None
        out[name] = resolved
    return out


def files(
    path: str | os.PathLike[str],
    *,
    format: Format | None = None,
    schema: Any = None,
    on_error: OnError = "fail",
    separator: str = ",",
    storage_options: dict[str, Any] | None = None,
    watch: bool = False,
    tail: bool = False,
    formats: str | list[str] | tuple[str, ...] | None = None,
) -> FileSource:
    """Read CSV, JSON-lines or Parquet files: one file, a glob or a directory, local or fsspec.

    Parameters
    ----------
    path
        ``data/sales.parquet``, ``data/*.csv``, ``data/`` or ``s3://bucket/sales/*.parquet``.
    format
        ``"parquet"``, ``"csv"`` or ``"jsonl"``; default from the extension.
    schema
        Declared schema (``{"ts": pl.Int64, ...}``); default: inferred from the first file.
        With a declared schema, text records are checked one by one.
    on_error
        ``"fail"`` (default): a record that does not fit the schema stops the job with its
        file, line and column. ``"dead_letter"``: it goes to the read step's dead letters
        (needs ``schema``: without one, types are inferred and every value fits).
    watch
        Stream mode: keep watching the directory/glob for new files (write them atomically).
    tail
        Stream mode: follow one growing JSON-lines/CSV file (like ``tail -F``: a truncated or
        replaced file is read again from its start).
    formats
        strftime patterns for declared ``Datetime``/``Date`` columns of text files, tried in
        order for each value; default: ISO 8601 with ``T`` or a space, optional fraction and
        optional ``Z``/offset (converted to the column's time zone), or a bare date.

    Examples
    --------
    >>> import riverbed as rb
    >>> src = rb.files("data/*.parquet")
    >>> src.describe()
    'files data/*.parquet'
    """
    if on_error not in ("fail", "dead_letter"):
        raise ConfigError(f"on_error must be 'fail' or 'dead_letter', got {on_error!r}")
    if watch and tail:
        raise ConfigError("choose watch=True (new files) or tail=True (a growing file), not both")
    if on_error == "dead_letter" and schema is None:
        raise ConfigError(
            "on_error='dead_letter' needs a declared schema: without one every column's type is "
            "inferred from the data, so no record can be told apart as bad.\n"
            "  hint: rb.files(..., schema={'ts': pl.Datetime('us', 'UTC'), 'amount': pl.Float64}, "
            "on_error='dead_letter')"
        )
    if isinstance(formats, str):
        formats = (formats,)
    declared = _declared_schema(schema) if schema is not None else None
    if format is not None:
        format_of("", format)
    return FileSource(
        path=os.fspath(path),
        format=format,
        schema_=declared,
        on_error=on_error,
        separator=separator,
        storage_options=storage_options,
        watch=watch,
        tail=tail,
        formats=tuple(formats) if formats else None,
    )
