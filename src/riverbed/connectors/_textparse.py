"""Parse text records (CSV fields, JSON lines) against a declared schema, record by record.

Bad records are reported with their file, line, field, raw text and the reason, and either
raise (``on_error="fail"``, the first bad record in file order) or come back as dead letters
(``on_error="dead_letter"``). The work is vectorized; a per-record Python path runs only for
CSV text with quotes (a record may span lines) and for JSON lines that do not decode.

Every value is judged on its own (no format is inferred from the first value), so the result
does not depend on how a file was cut into chunks. Lines that are not valid UTF-8 are bad
records, never silently repaired.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl

from riverbed._errors import RecordError, SourceError
from riverbed.connectors._textdates import parse_datetime
from riverbed.connectors.base import DEAD_LETTER_SCHEMA

OnError = Literal["fail", "dead_letter"]
LINE = "__rb_line"
RAW = "__rb_raw"
FILE = "__rb_file"  # the index of the piece (file) a row came from, when several are parsed at once
SRC = "__rb_src"
_LETTERS = pl.Schema([(FILE, pl.Int64()), (LINE, pl.Int64()), *DEAD_LETTER_SCHEMA.items()])
_FIELD_LIMIT = 2**31 - 1  # Python's csv stops at 128 KiB per field by default


@dataclass(frozen=True)
class TextOptions:
    """How text records are checked: time formats, and the event-time column that must be set."""

    formats: tuple[str, ...] | None = None
    event_time: str | None = None


def _is_nested(dtype: pl.DataType) -> bool:
    return isinstance(dtype, pl.List | pl.Struct | pl.Array)


def _coalesce_formats(s: pl.Expr, formats: tuple[str, ...], parse: Any) -> pl.Expr:
    out = [parse(s, f) for f in formats]
    return pl.coalesce(out) if len(out) > 1 else out[0]


def _cast(name: str, dtype: pl.DataType, formats: tuple[str, ...] | None = None) -> pl.Expr:
    """Vectorized string -> dtype conversion that yields null where a value does not parse."""
    s = pl.col(name)
    if dtype == pl.String:
        return s
    if dtype == pl.Boolean:
        low = s.str.strip_chars().str.to_lowercase()
        return (
            pl.when(low.is_in(["true", "1", "t", "yes"]))
            .then(True)
            .when(low.is_in(["false", "0", "f", "no"]))
            .then(False)
            .otherwise(None)
        )
    if isinstance(dtype, pl.Datetime):
        return parse_datetime(s, dtype, formats)
    if dtype == pl.Date:
        return _coalesce_formats(
            s.str.strip_chars(),
            formats or ("%Y-%m-%d",),
            lambda e, f: e.str.to_date(f, strict=False, exact=True),
        )
    if dtype == pl.Time:
        return _coalesce_formats(
            s.str.strip_chars(),
            ("%H:%M:%S%.f", "%H:%M"),
            lambda e, f: e.str.to_time(f, strict=False),
        )
    if dtype.is_numeric():
        return s.str.strip_chars().cast(dtype, strict=False)
    return s.cast(dtype, strict=False)


def _letters(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Dead letters plus their file index and line number, from dicts."""
    return pl.DataFrame(rows, schema=_LETTERS)


def _letter(
    file: int, line: int, source: str, error: str, raw: str, field: str | None = None
) -> dict[str, Any]:
    return {
        FILE: file,
        LINE: line,
        "source": source,
        "position": f"line {line}",
        "field": field,
        "error": error,
        "raw": raw,
    }


def _settle(
    good: pl.DataFrame, letters: list[pl.DataFrame], *, on_error: OnError
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Order the dead letters by file and line; raise for the first one, or return them
    (both frames keep ``__rb_file``, the index of the piece each row came from)."""
    letters = [f for f in letters if f.height]
    if not letters:
        return good, None
    bad = pl.concat([f.select(_LETTERS.names()).cast(_LETTERS) for f in letters])
    bad = bad.sort(FILE, LINE, maintain_order=True)
    if on_error == "fail":
        row = bad.row(0, named=True)
        where = f", column {row['field']!r}" if row["field"] else ""
        raise RecordError(
            f"{row['source']}: {row['position']}{where}: {row['error']}\n"
            f"  record: {row['raw'][:200]}\n"
            "  hint: fix the record, or read with on_error='dead_letter' to divert bad rows",
            source=row["source"],
            position=row["position"],
            field=row["field"],
            raw=row["raw"],
        )
    return good, bad.drop(LINE)


def decode_lines(
    data: bytes, *, source: str, first_line: int, bom: bool, file: int = 0
) -> tuple[str, pl.DataFrame | None]:
    """UTF-8 text, and dead letters for the lines that are not valid UTF-8 (blanked in the text,
    so line numbers stay), or None. ``bom``: drop a byte-order mark at the start."""
    try:
        text = data.decode("utf-8")
        letters = None
    except UnicodeDecodeError:
        lines: list[str] = []
        rows = []
        for i, chunk in enumerate(data.split(b"\n")):
            try:
                lines.append(chunk.decode("utf-8"))
            except UnicodeDecodeError as exc:
                lines.append("")
                raw = chunk.decode("utf-8", "backslashreplace").rstrip("\r")
                why = f"invalid UTF-8 at byte {exc.start + 1} of the line"
                rows.append(_letter(file, first_line + i, source, why, raw))
        text = "\n".join(lines)
        letters = _letters(rows)
    if bom and text.startswith("\ufeff"):
        text = text[1:]
    return text, letters


def check_and_cast(
    raw: pl.DataFrame,
    schema: pl.Schema,
    *,
    source: str,
    on_error: OnError,
    options: TextOptions = TextOptions(),
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Cast string columns of ``raw`` (plus ``__rb_line``/``__rb_raw``) to ``schema``.

    Returns the good rows (exactly ``schema``) and the dead letters (or None).
    """
    raw = raw.with_columns(pl.lit(source).alias(SRC), pl.lit(0, pl.Int64).alias(FILE))
    good, letters = _check(raw, schema, options=options)
    good, dead = _settle(good, [letters], on_error=on_error)
    return good.drop(FILE), None if dead is None else dead.drop(FILE)


def _check(
    raw: pl.DataFrame, schema: pl.Schema, *, options: TextOptions = TextOptions()
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Good rows (``schema`` plus ``__rb_file``) and dead letters, from text columns plus
    ``__rb_file``, ``__rb_src``, ``__rb_line`` and ``__rb_raw``."""
    text_cols = [c for c, t in schema.items() if not _is_nested(t)]
    parsed = raw.lazy().with_columns(
        *(_cast(c, schema[c], options.formats).alias(f"__rb_p_{c}") for c in text_cols),
    )
    # (field, failed?, why) in column order; the first failing check names the record's error
    checks: list[tuple[str, pl.Expr, pl.Expr]] = []
    for c in schema.names():
        col = pl.col(c)
        if c == options.event_time:
            empty = col.is_null()
            if c in text_cols:
                empty = empty | (col.cast(pl.String).str.strip_chars() == "")
            checks.append((c, empty, pl.lit(f"the event time {c!r} is missing (null or empty)")))
        if c in text_cols and schema[c] != pl.String:
            failed = col.is_not_null() & (col != "") & pl.col(f"__rb_p_{c}").is_null()
            why = pl.format(
                "cannot parse {} as {}", col.map_elements(repr, pl.String), pl.lit(str(schema[c]))
            )
            checks.append((c, failed, why))
    flags = [f"__rb_f_{i}" for i in range(len(checks))]
    out = [pl.col(f"__rb_p_{c}").alias(c) if c in text_cols else pl.col(c).cast(t) for c, t in schema.items()]
    if not checks:
        return parsed.select(*out, FILE).collect(), _letters([])
    parsed = parsed.with_columns(
        failed.alias(flag) for (_, failed, _), flag in zip(checks, flags, strict=True)
    )
    flagged = parsed.with_columns(pl.any_horizontal(flags).alias("__rb_bad")).collect()
    good = flagged.filter(~pl.col("__rb_bad")).select(*out, FILE)
    bad = flagged.filter(pl.col("__rb_bad"))
    if bad.height == 0:
        return good, _letters([])
    letters = bad.select(
        FILE,
        pl.col(LINE).cast(pl.Int64),
        source=pl.col(SRC),
        position=pl.format("line {}", pl.col(LINE)),
        field=pl.coalesce(
            pl.when(pl.col(f)).then(pl.lit(c)) for (c, _, _), f in zip(checks, flags, strict=True)
        ),
        error=pl.coalesce(pl.when(pl.col(f)).then(why) for (_, _, why), f in zip(checks, flags, strict=True)),
        raw=pl.col(RAW),
    )
    return good, letters


Piece = tuple[str, bytes, int]
"""One text input: its source name (file), its bytes, and the file line number of its first line."""


def _lines_frame(items: list[tuple[int, str, str, int]]) -> pl.DataFrame:
    """(file index, source, text, first line number) -> one row per non-blank line, with
    ``__rb_file``, ``__rb_src``, ``__rb_line`` and ``__rb_raw`` (a trailing ``\\r`` removed)."""
    texts = pl.DataFrame(
        [(i, src, text, first) for i, src, text, first in items],
        schema={FILE: pl.Int64, SRC: pl.String, RAW: pl.String, LINE: pl.Int64},
        orient="row",
    )
    return (
        texts.lazy()
        .with_columns(pl.col(RAW).str.split("\n"))
        .with_columns(pl.int_ranges(pl.col(LINE), pl.col(LINE) + pl.col(RAW).list.len()).alias(LINE))
        .explode(RAW, LINE)
        .with_columns(pl.col(RAW).str.strip_suffix("\r"))
        .filter(pl.col(RAW).str.strip_chars() != "")
        .collect()
    )


def parse_csv_text(
    data: bytes,
    schema: pl.Schema,
    *,
    source: str,
    first_line: int,
    on_error: OnError,
    separator: str = ",",
    has_header: bool = True,
    header: list[str] | None = None,
    options: TextOptions = TextOptions(),
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Parse CSV bytes with every field as text, then check and cast against ``schema``.

    ``first_line`` is the file line number of the first data row. Blank lines are skipped;
    a record with the wrong number of fields is a bad record (``field`` is null). An empty
    file (not even a header) has no rows.
    """
    piece = (source, data, first_line - (1 if has_header else 0))
    good, dead = parse_csv_pieces(
        [piece],
        schema,
        on_error=on_error,
        separator=separator,
        header=None if has_header else header,
        options=options,
    )
    return good.drop(FILE), None if dead is None else dead.drop(FILE)


def parse_csv_pieces(
    pieces: list[Piece],
    schema: pl.Schema,
    *,
    on_error: OnError,
    separator: str = ",",
    header: list[str] | None = None,
    options: TextOptions = TextOptions(),
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Parse CSV texts (each with its header line, unless ``header`` is given) in one go.

    Returns good rows and dead letters, both with ``__rb_file`` (the index of their piece).
    Texts without quotes that share a header are split together, vectorized.
    """
    letters: list[pl.DataFrame] = []
    oks: list[pl.DataFrame] = []
    plain: dict[tuple[str, ...], list[tuple[int, str, str, int]]] = {}
    for i, (source, data, first) in enumerate(pieces):
        text, bad = decode_lines(data, source=source, first_line=first, bom=header is None, file=i)
        if bad is not None:
            letters.append(bad)
        names, body_first = header, first
        if names is None:
            if not text.strip():
                continue  # an empty file: no header, no rows
            first_row, _, text = text.partition("\n")
            names, body_first = read_csv_header(first_row, separator), first + 1
        missing = [c for c in schema.names() if c not in names]
        if missing:
            raise SourceError(
                f"{source}: the declared schema names column(s) {missing} that the CSV header "
                f"does not have.\n  header: {names}"
            )
        if '"' in text:
            ok, ragged = _csv_quoted(text, separator, names, body_first, i, source)
            oks.append(ok.select(FILE, SRC, LINE, RAW, *schema.names()))
            letters.append(_ragged_letters(ragged, len(names)))
        else:
            plain.setdefault(tuple(names), []).append((i, source, text, body_first))
    for shared, items in plain.items():
        ok, ragged = _csv_plain(_lines_frame(items), separator, list(shared))
        oks.append(ok.select(FILE, SRC, LINE, RAW, *schema.names()))
        letters.append(_ragged_letters(ragged, len(shared)))
    raw = (
        pl.concat(oks)
        if oks
        else pl.DataFrame(
            schema={
                FILE: pl.Int64,
                SRC: pl.String,
                LINE: pl.Int64,
                RAW: pl.String,
                **{c: pl.String for c in schema.names()},
            }
        )
    )
    if len(oks) > 1:
        raw = raw.sort(FILE, LINE, maintain_order=True)
    good, bad = _check(raw, schema, options=options)
    return _settle(good, [*letters, bad], on_error=on_error)


def _ragged_letters(ragged: pl.DataFrame, width: int) -> pl.DataFrame:
    return ragged.select(
        FILE,
        LINE,
        source=pl.col(SRC),
        position=pl.format("line {}", pl.col(LINE)),
        field=pl.lit(None, pl.String),
        error=pl.when(pl.col("__rb_n") < 0)
        .then(pl.col("__rb_why"))
        .otherwise(pl.format(f"expected {width} fields, got {{}}", pl.col("__rb_n"))),
        raw=pl.col(RAW),
    )


_RAGGED = {
    FILE: pl.Int64,
    SRC: pl.String,
    LINE: pl.Int64,
    RAW: pl.String,
    "__rb_n": pl.Int64,
    "__rb_why": pl.String,
}


def _csv_plain(frame: pl.DataFrame, sep: str, header: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """CSV without quotes: one line is one record, fields split vectorized.

    Returns the records with the right number of fields (text columns plus ``__rb_file``,
    ``__rb_src``, ``__rb_line``, ``__rb_raw``) and the others (see ``_RAGGED``).
    """
    split = frame.with_columns(pl.col(RAW).str.split(sep).alias("__rb_fields")).with_columns(
        pl.col("__rb_fields").list.len().cast(pl.Int64).alias("__rb_n")
    )
    width = len(header)
    cols = [pl.col("__rb_fields").list.get(i).alias(name) for i, name in enumerate(header)]
    ok = (
        split.lazy()
        .filter(pl.col("__rb_n") == width)
        .with_columns(cols)
        .select(
            FILE,
            SRC,
            LINE,
            RAW,
            *(pl.when(pl.col(c) != "").then(pl.col(c)).alias(c) for c in dict.fromkeys(header)),
        )
        .collect()
    )
    ragged = split.filter(pl.col("__rb_n") != width).select(
        FILE, SRC, LINE, RAW, "__rb_n", pl.lit(None, pl.String).alias("__rb_why")
    )
    return ok, ragged


def split_lines(text: str) -> list[str]:
    """Lines of ``text`` split at ``\\n`` only (as the vectorized path does), ends kept."""
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def read_csv_header(line: str, sep: str) -> list[str]:
    """Column names from a CSV header line (quotes and a byte-order mark handled)."""
    line = line.removeprefix("\ufeff").rstrip("\r\n")
    return next(csv.reader([line], delimiter=sep), [])


def _csv_quoted(
    text: str, sep: str, header: list[str], first_line: int, file: int, source: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """CSV with quotes, record by record (a quoted field may hold separators and newlines),
    keeping each record's first line number and its raw text. Same results as
    :func:`_csv_plain`. A malformed record (say a quote never closed) is one bad line: reading
    starts again on the next line, so good and bad records still add up to the input."""
    lines = split_lines(text)
    columns: list[list[str | None]] = [[] for _ in header]
    good_lines: list[int] = []
    good_raw: list[str] = []
    bad: list[tuple[int, str, int, str, int, str | None]] = []
    pos = 0

    def feed() -> Any:
        nonlocal pos
        while pos < len(lines):
            pos += 1
            yield lines[pos - 1]

    old_limit = csv.field_size_limit(_FIELD_LIMIT)
    try:
        while pos < len(lines):
            start = pos
            try:
                for record in csv.reader(feed(), delimiter=sep, strict=True):
                    raw = "".join(lines[start:pos]).rstrip("\r\n")
                    line_no, start = first_line + start, pos
                    if not record or (len(record) == 1 and not record[0].strip() and len(header) != 1):
                        continue  # a blank line
                    if len(record) != len(header):
                        bad.append((file, source, line_no, raw, len(record), None))
                        continue
                    good_lines.append(line_no)
                    good_raw.append(raw)
                    for col, value in zip(columns, record, strict=True):
                        col.append(value if value != "" else None)
            except csv.Error as exc:
                why = (  # an odd count of quotes on the first line: one left open there
                    "unbalanced quotes: a quoted field is not closed"
                    if "end of data" in str(exc) or lines[start].count('"') % 2
                    else f"malformed CSV: {exc}"
                )
                bad.append((file, source, first_line + start, lines[start].rstrip("\r\n"), -1, why))
                pos = start + 1  # recover: the next line starts a new record
    finally:
        csv.field_size_limit(old_limit)
    n = len(good_lines)
    data: dict[str, pl.Series] = {
        FILE: pl.Series([file] * n, dtype=pl.Int64),
        SRC: pl.Series([source] * n, dtype=pl.String),
        LINE: pl.Series(good_lines, dtype=pl.Int64),
        RAW: pl.Series(good_raw, dtype=pl.String),
    }
    for name, col in zip(header, columns, strict=True):
        data.setdefault(name, pl.Series(col, dtype=pl.String))
    ragged = pl.DataFrame(bad, schema=_RAGGED, orient="row")
    return pl.DataFrame(data), ragged


def _py_field(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def parse_json_text(
    data: bytes,
    schema: pl.Schema,
    *,
    source: str,
    first_line: int,
    on_error: OnError,
    options: TextOptions = TextOptions(),
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Parse JSON-lines bytes (``first_line``: the file line number of the first line)."""
    good, dead = parse_json_pieces([(source, data, first_line)], schema, on_error=on_error, options=options)
    return good.drop(FILE), None if dead is None else dead.drop(FILE)


def parse_json_pieces(
    pieces: list[Piece],
    schema: pl.Schema,
    *,
    on_error: OnError,
    options: TextOptions = TextOptions(),
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Parse JSON-lines texts in one go; blank lines are skipped. Both frames returned keep
    ``__rb_file``, the index of the piece each row came from."""
    letters: list[pl.DataFrame] = []
    items = []
    for i, (source, data, first) in enumerate(pieces):
        text, bad = decode_lines(data, source=source, first_line=first, bom=first == 1, file=i)
        if bad is not None:
            letters.append(bad)
        items.append((i, source, text, first))
    frame = _lines_frame(items)
    flat = {c: (t if _is_nested(t) else pl.String) for c, t in schema.items()}
    try:
        decoded = frame.with_columns(pl.col(RAW).str.json_decode(pl.Struct(flat)).alias("__rb_s")).unnest(
            "__rb_s"
        )
        good, bad = _check(decoded, schema, options=options)
        return _settle(good, [*letters, bad], on_error=on_error)
    except pl.exceptions.PolarsError:
        pass  # some line does not decode: find it line by line below
    good_rows: dict[str, list[str | None]] = {c: [] for c in flat}
    good_idx: list[tuple[int, int]] = []
    rows: list[dict[str, Any]] = []
    for file, source, line_no, text in frame.select(FILE, SRC, LINE, RAW).iter_rows():
        err = None
        field = None
        try:
            obj = json.loads(text)
            if not isinstance(obj, dict):
                err = f"expected a JSON object, got {type(obj).__name__}"
        except json.JSONDecodeError as exc:
            err = f"invalid JSON: {exc}"
            obj = None
        if err is None:
            assert isinstance(obj, dict)
            for c, t in schema.items():
                v = obj.get(c)
                if isinstance(v, dict | list) and not _is_nested(t):
                    err, field = f"expected {t}, got a JSON {type(v).__name__}", c
                    break
        if err is not None:
            rows.append(_letter(file, line_no, source, err, text, field))
            continue
        assert isinstance(obj, dict)
        good_idx.append((file, line_no))
        for c in flat:
            good_rows[c].append(_py_field(obj.get(c)))
    good_frame = pl.DataFrame(
        {
            FILE: pl.Series([f for f, _ in good_idx], dtype=pl.Int64),
            LINE: pl.Series([n for _, n in good_idx], dtype=pl.Int64),
            **{c: pl.Series(v, dtype=pl.String) for c, v in good_rows.items()},
        }
    ).join(frame.select(FILE, LINE, SRC, RAW), on=[FILE, LINE], how="left", maintain_order="left")
    nested = [c for c, t in schema.items() if _is_nested(t)]
    if nested:
        good_frame = good_frame.with_columns(pl.col(c).str.json_decode(schema[c]) for c in nested)
    good, dead = _check(good_frame, schema, options=options)
    return _settle(good, [*letters, _letters(rows), dead], on_error=on_error)
