"""``riverbed log ...``: create topics, produce files or stdin, consume as JSON lines, describe.

Mounted by the main app as ``riverbed log``::

    riverbed log create orders --partitions 4 --retention 7d
    riverbed log produce orders --key store_id sales.parquet
    tail -f events.jsonl | riverbed log produce orders -
    riverbed log consume orders --from-beginning --group billing --max 100
    riverbed log describe orders
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from riverbed._errors import ConfigError, RecordError, RiverbedError, SourceError
from riverbed._humanize import plural
from riverbed._time import format_ms, to_ms
from riverbed.cli._help import Command, new_app

if TYPE_CHECKING:
    import polars as pl

    from riverbed.eventlog import Topic

log_app = new_app(help="The embedded replayable log: topics, produce, consume.", no_args_is_help=True)
_out = Console(soft_wrap=True)
_err = Console(stderr=True, soft_wrap=True)

Home = Annotated[
    Path | None,
    typer.Option(
        "--home",
        metavar="DIR",
        help="riverbed's data directory.",
        show_default="$RIVERBED_HOME or ./.riverbed",
    ),
]
TopicArg = Annotated[str, typer.Argument(metavar="TOPIC", help="Topic name.")]

_STDIN_CHUNK = 1 << 20
_CONSUME_ROWS = 10_000


@contextlib.contextmanager
def _cli_errors() -> Iterator[None]:
    """Print riverbed errors as ``error: ...`` on stderr and exit with status 1."""
    try:
        yield
    except RiverbedError as exc:
        _err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _retention(topic: Topic) -> str:
    parts = []
    if topic.retention_ms is not None:
        parts.append(format_ms(topic.retention_ms))
    if topic.retention_bytes is not None:
        parts.append(f"{_size(topic.retention_bytes)}/partition")
    return ", ".join(parts) or "forever"


@log_app.command(cls=Command)
def create(
    topic: TopicArg,
    partitions: Annotated[int, typer.Option("--partitions", help="Number of partitions.")] = 1,
    retention: Annotated[
        str | None, typer.Option("--retention", help="Drop records older than this, e.g. 7d.")
    ] = None,
    retention_bytes: Annotated[
        int | None,
        typer.Option("--retention-bytes", help="Keep at most this many bytes per partition."),
    ] = None,
    home: Home = None,
) -> None:
    """Create a topic."""
    from riverbed.eventlog import Log

    with _cli_errors(), Log(home) as log:
        ret_ms = None if retention is None else to_ms(retention, what="--retention")
        t = log.create_topic(topic, partitions, ret_ms, retention_bytes)
        _out.print(
            f"created topic {escape(repr(topic))}: {plural(t.partitions, 'partition')}, "
            f"retention {_retention(t)}",
            highlight=False,
        )


def _read_file(path: str, schema: pl.Schema | None) -> pl.DataFrame:
    import polars as pl

    suffix = Path(path).suffix.lower()
    if not Path(path).is_file():
        raise SourceError(f"no such file: {path}")
    try:
        if suffix in (".jsonl", ".ndjson", ".json"):
            return pl.read_ndjson(path, schema=schema)
        if suffix in (".csv", ".tsv"):
            sep = "\t" if suffix == ".tsv" else ","
            return pl.read_csv(path, separator=sep, schema_overrides=schema)
        if suffix in (".parquet", ".pq"):
            return pl.read_parquet(path)
    except pl.exceptions.PolarsError as exc:
        data = Path(path).read_bytes()
        if suffix in (".jsonl", ".ndjson", ".json"):
            found = _first_bad_json_line(data, schema, first_line=1)
        elif schema is not None:
            found = _first_bad_csv_line(data, schema, path, "\t" if suffix == ".tsv" else ",")
        else:
            found = None
        if found is None:
            raise SourceError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
        line, raw, why = found
        raise SourceError(
            f"{path}: line {line}: {why}\n  record: {raw[:200]}\n  nothing was appended"
        ) from None
    raise ConfigError(
        f"cannot tell the format of {path!r} from its extension; expected .jsonl, .ndjson, "
        ".json, .csv, .tsv, .parquet or .pq (use - for JSON lines on stdin)"
    )


def _first_bad_json_line(
    data: bytes, schema: pl.Schema | None, first_line: int
) -> tuple[int, str, str] | None:
    """(line number, text, why) of the first line of ``data`` that is not a JSON object that
    fits ``schema``, or None."""
    import polars as pl

    lines = data.split(b"\n")
    for n, raw in enumerate(lines):
        if not raw.strip():
            continue
        text = raw.decode("utf-8", "backslashreplace").rstrip("\r")
        try:
            obj = json.loads(raw)
        except ValueError as exc:
            return first_line + n, text, f"invalid JSON: {exc}"
        if not isinstance(obj, dict):
            return first_line + n, text, f"expected a JSON object, got {type(obj).__name__}"
    # every line is JSON: the first that does not fit the schema, by halving
    lo, hi = 0, len(lines)
    if _fits(lines, schema):
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _fits(lines[lo:mid], schema):
            lo = mid
        else:
            hi = mid
    text = lines[lo].decode("utf-8", "backslashreplace").rstrip("\r")
    try:
        pl.read_ndjson(io.BytesIO(lines[lo]), schema=schema)
        why = "does not fit the topic's schema"
    except pl.exceptions.PolarsError as exc:
        why = f"does not fit the topic's schema: {str(exc).splitlines()[0]}"
    return first_line + lo, text, why


def _fits(lines: list[bytes], schema: pl.Schema | None) -> bool:
    import polars as pl

    try:
        pl.read_ndjson(io.BytesIO(b"\n".join(lines) + b"\n"), schema=schema)
        return True
    except pl.exceptions.PolarsError:
        return False


def _first_bad_csv_line(data: bytes, schema: pl.Schema, path: str, sep: str) -> tuple[int, str, str] | None:
    from riverbed.connectors._textparse import parse_csv_text

    try:
        parse_csv_text(data, schema, source=path, first_line=2, on_error="fail", separator=sep)
    except RecordError as exc:
        line = int(str(exc.position).split()[-1])
        where = f"column {exc.field!r}: " if exc.field else ""
        return line, str(exc.raw), where + str(exc).split(": ", 2)[-1].splitlines()[0]
    except SourceError:
        return None
    return None


def _parse_jsonl(
    data: bytes, schema: pl.Schema | None, where: str, first_line: int, done: int
) -> pl.DataFrame:
    import polars as pl

    try:
        return pl.read_ndjson(io.BytesIO(data), schema=schema)
    except pl.exceptions.PolarsError as exc:
        found = _first_bad_json_line(data, schema, first_line)
        before = (
            f"{done:,} record{'' if done == 1 else 's'} from the lines before line {first_line} "
            f"{'was' if done == 1 else 'were'} appended; nothing from line {first_line} on"
            if done
            else "nothing was appended"
        )
        if found is None:
            raise SourceError(
                f"cannot read JSON lines from {where}: {str(exc).splitlines()[0]}\n  {before}"
            ) from None
        line, raw, why = found
        raise SourceError(f"{where}: line {line}: {why}\n  record: {raw[:200]}\n  {before}") from None


def _stdin_chunks() -> Iterator[bytes]:
    """Complete lines from stdin, as soon as they are available (so pipes stream)."""
    stream = sys.stdin.buffer
    read = getattr(stream, "read1", stream.read)
    rest = b""
    while chunk := read(_STDIN_CHUNK):
        rest += chunk
        cut = rest.rfind(b"\n")
        if cut >= 0:
            yield rest[: cut + 1]
            rest = rest[cut + 1 :]
    if rest.strip():
        yield rest


@log_app.command(cls=Command)
def produce(
    topic: TopicArg,
    source: Annotated[str, typer.Argument(metavar="FILE|-", help="JSONL, CSV or Parquet file; - for stdin.")],
    key: Annotated[str | None, typer.Option("--key", help="Column whose hash picks the partition.")] = None,
    home: Home = None,
) -> None:
    """Append records from a file (format from its extension) or JSON lines from stdin."""
    from riverbed.eventlog import Log

    with _cli_errors(), Log(home) as log:
        t = log.topic(topic)
        total = 0
        if source == "-":
            line = 1
            for chunk in _stdin_chunks():
                df = _parse_jsonl(chunk, t.schema, "stdin", first_line=line, done=total)
                t.append(df, key=key)
                total += df.height
                line += chunk.count(b"\n")
        else:
            df = _read_file(source, t.schema)
            t.append(df, key=key)
            total = df.height
        _err.print(f"produced {plural(total, 'record')} to {escape(repr(topic))}", highlight=False)


def _start_positions(t: Topic, group: str | None, from_beginning: bool) -> dict[int, int]:
    starts = t.start_offsets()
    positions = starts if from_beginning else t.end_offsets()
    if group is not None:
        for p, off in t.committed(group).items():
            if off < starts[p]:
                _err.print(
                    f"partition {p}: group {escape(group)!r} was at offset {off}, removed by "
                    f"retention; continuing at {starts[p]}",
                    highlight=False,
                )
            positions[p] = max(off, starts[p])
    return positions


@log_app.command(cls=Command)
def consume(
    topic: TopicArg,
    from_beginning: Annotated[
        bool,
        typer.Option("--from-beginning", help="Start at the oldest record (default: the end)."),
    ] = False,
    group: Annotated[
        str | None,
        typer.Option("--group", help="Start from and commit this consumer group's position."),
    ] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep waiting for new records.")] = False,
    max_records: Annotated[int | None, typer.Option("--max", help="Stop after this many records.")] = None,
    metadata: Annotated[
        bool, typer.Option("--meta", help="Add _partition, _offset and _timestamp fields.")
    ] = False,
    home: Home = None,
) -> None:
    """Print records as JSON lines on stdout, partition by partition.

    With `--group` a partition starts at the group's committed position (others at the
    beginning or the end, per `--from-beginning`), and positions are committed as records
    are printed and for every partition on exit.
    """
    from riverbed.eventlog import Log

    with _cli_errors(), Log(home) as log:
        t = log.topic(topic)
        positions = _start_positions(t, group, from_beginning)
        printed = 0
        try:
            while max_records is None or printed < max_records:
                progressed = False
                for p in range(t.partitions):
                    want = _CONSUME_ROWS
                    if max_records is not None:
                        want = min(want, max_records - printed)
                        if want <= 0:
                            break
                    df = t.read(p, positions[p], want, metadata=metadata)
                    if df.height == 0:
                        continue
                    sys.stdout.write(df.write_ndjson())
                    sys.stdout.flush()
                    positions[p] += df.height
                    printed += df.height
                    progressed = True
                    if group is not None:
                        t.commit(group, {p: positions[p]})
                if not progressed:
                    if not follow:
                        break
                    time.sleep(0.05)
        except KeyboardInterrupt:
            pass
        except BrokenPipeError:  # e.g. `| head`: the reader went away; exit quietly
            with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        if group is not None:  # like a Kafka consumer: every partition's position, read or not
            t.commit(group, positions)


@log_app.command("topics", cls=Command)
def list_topics(home: Home = None) -> None:
    """List the topics."""
    from riverbed.eventlog import Log

    with _cli_errors(), Log(home) as log:
        names = log.topics()
        if not names:
            _out.print(f"no topics in {escape(str(log.root))}", highlight=False)
            return
        table = Table("topic", "partitions", "records", "size", "retention")
        for name in names:
            t = log.topic(name)
            d = t.describe()
            table.add_row(
                escape(name),
                str(t.partitions),
                f"{d.records:,}",
                _size(d.size_bytes),
                _retention(t),
            )
        _out.print(table)


@log_app.command(cls=Command)
def describe(topic: TopicArg, home: Home = None) -> None:
    """Per partition: start and end offsets, records, size, and lag per consumer group."""
    from riverbed.eventlog import Log

    with _cli_errors(), Log(home) as log:
        t = log.topic(topic)
        d = t.describe()
        schema = "(none yet)" if d.schema is None else ", ".join(f"{k}: {v}" for k, v in d.schema.items())
        table = Table(
            "partition",
            "start",
            "end",
            "records",
            "batches",
            "size",
            *[f"lag {escape(g)}" for g in d.groups],
            title=f"topic {escape(topic)}",
            caption=escape(f"retention {_retention(t)}; schema {{{schema}}}"),
        )
        for p in d.partitions:
            table.add_row(
                str(p.partition),
                str(p.start_offset),
                str(p.end_offset),
                f"{p.records:,}",
                str(p.batches),
                _size(p.size_bytes),
                *[str(p.lag[g]) for g in d.groups],
            )
        _out.print(table)
