"""Parse text records (CSV fields, JSON lines) against a declared schema, record by record.

Bad records are reported with their file, line, field, raw text and the reason, and either
raise (``on_error="fail"``, the first bad record in file order) or come back as dead letters
(``on_error="dead_letter"``). The work is vectorized; a per-record Python path runs only for
CSV text with quotes (a record may span lines) and for JSON lines that do not decode.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Literal

import polars as pl

from riverbed._errors import RecordError, SourceError
from riverbed.connectors.base import DEAD_LETTER_SCHEMA

OnError = Literal["fail", "dead_letter"]
LINE = "__rb_line"
RAW = "__rb_raw"


def _is_nested(dtype: pl.DataType) -> bool:
    return isinstance(dtype, pl.List | pl.Struct | pl.Array)


def _cast(name: str, dtype: pl.DataType) -> pl.Expr:
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
        out = s.str.strip_chars().str.to_datetime(time_unit=dtype.time_unit or "us", strict=False)
        return out.dt.replace_time_zone(dtype.time_zone) if dtype.time_zone else out
    if dtype == pl.Date:
        return s.str.strip_chars().str.to_date(strict=False)
    if dtype.is_numeric():
        return s.str.strip_chars().cast(dtype, strict=False)
    return s.cast(dtype, strict=False)


def check_and_cast(
    raw: pl.DataFrame,
    schema: pl.Schema,
    *,
    source: str,
    on_error: OnError,
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Cast string columns of ``raw`` (plus ``__rb_line``/``__rb_raw``) to ``schema``.

    Returns the good rows (exactly ``schema``) and the dead letters (or None).
    """
    good, letters = _check(raw, schema, source=source)
    return _settle(good, [letters], source=source, on_error=on_error)


def _letters(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Dead letters plus their line number (``__rb_line``), from dicts."""
    return pl.DataFrame(rows, schema={LINE: pl.Int64, **DEAD_LETTER_SCHEMA})


def _settle(
    good: pl.DataFrame, letters: list[pl.DataFrame], *, source: str, on_error: OnError
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Order the dead letters by line; raise for the first one, or return them."""
    bad = pl.concat([f.cast({LINE: pl.Int64}) for f in letters if f.height] or [_letters([])])
    if bad.height == 0:
        return good, None
    bad = bad.sort(LINE, maintain_order=True)
    if on_error == "fail":
        row = bad.row(0, named=True)
        where = f", column {row['field']!r}" if row["field"] else ""
        raise RecordError(
            f"{source}: {row['position']}{where}: {row['error']}\n"
            f"  record: {row['raw'][:200]}\n"
            "  hint: fix the record, or read with on_error='dead_letter' to divert bad rows",
            source=source,
            position=row["position"],
            field=row["field"],
            raw=row["raw"],
        )
    return good, bad.drop(LINE)


def _check(raw: pl.DataFrame, schema: pl.Schema, *, source: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Good rows (exactly ``schema``) and dead letters with their ``__rb_line``."""
    text_cols = [c for c, t in schema.items() if not _is_nested(t)]
    parsed = raw.with_columns(
        *(_cast(c, schema[c]).alias(f"__rb_p_{c}") for c in text_cols),
    )
    fails = [
        (pl.col(c).is_not_null() & (pl.col(c) != "") & pl.col(f"__rb_p_{c}").is_null()).alias(f"__rb_f_{c}")
        for c in text_cols
        if schema[c] != pl.String
    ]
    if fails:
        parsed = parsed.with_columns(*fails)
        flag_cols = [f"__rb_f_{c}" for c in text_cols if schema[c] != pl.String]
        bad_mask = pl.any_horizontal(flag_cols)
        bad = parsed.filter(bad_mask)
    else:
        flag_cols = []
        bad = parsed.clear()
    good = parsed.filter(~pl.any_horizontal(flag_cols)) if flag_cols else parsed
    good = good.select(
        *(pl.col(f"__rb_p_{c}").alias(c) if c in text_cols else pl.col(c).cast(t) for c, t in schema.items())
    )
    if bad.height == 0:
        return good, _letters([])
    # name the first failing field of each bad row
    field = pl.coalesce(*(pl.when(pl.col(f)).then(pl.lit(f.removeprefix("__rb_f_"))) for f in flag_cols))
    bad = bad.with_columns(__rb_field=field)
    bad = bad.with_columns(
        __rb_value=pl.coalesce(
            *(pl.when(pl.col("__rb_field") == c).then(pl.col(c)) for c in text_cols if schema[c] != pl.String)
        ),
        __rb_type=pl.coalesce(
            *(
                pl.when(pl.col("__rb_field") == c).then(pl.lit(str(schema[c])))
                for c in text_cols
                if schema[c] != pl.String
            )
        ),
    )
    letters = bad.select(
        pl.col(LINE).cast(pl.Int64),
        source=pl.lit(source),
        position=pl.format("line {}", pl.col(LINE)),
        field=pl.col("__rb_field"),
        error=pl.format(
            "cannot parse {} as {}",
            pl.col("__rb_value").map_elements(repr, pl.String),
            pl.col("__rb_type"),
        ),
        raw=pl.col(RAW),
    )
    return good, letters.cast(DEAD_LETTER_SCHEMA)


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
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Parse CSV bytes with every field as text, then check and cast against ``schema``.

    ``first_line`` is the file line number of the first data row. Blank lines are skipped;
    a record with the wrong number of fields is a bad record (``field`` is null).
    """
    text = data.decode("utf-8", errors="replace")
    if has_header and text.startswith("\ufeff"):
        text = text[1:]
    split = _csv_quoted if '"' in text else _csv_plain
    raw, ragged, names = split(text, separator, header if not has_header else None, first_line)
    missing = [c for c in schema.names() if c not in names]
    if missing:
        raise SourceError(
            f"{source}: the declared schema names column(s) {missing} that the CSV header "
            f"does not have.\n  header: {names}"
        )
    ragged = ragged.with_columns(
        source=pl.lit(source),
        position=pl.format("line {}", pl.col(LINE)),
        field=pl.lit(None, pl.String),
        error=pl.when(pl.col("__rb_n") < 0)
        .then(pl.lit("unbalanced quotes: a quoted field is not closed"))
        .otherwise(pl.format(f"expected {len(names)} fields, got {{}}", pl.col("__rb_n"))),
        raw=pl.col(RAW),
    ).select(LINE, *DEAD_LETTER_SCHEMA.names())
    good, bad = _check(raw, schema, source=source)
    return _settle(good, [ragged, bad], source=source, on_error=on_error)


def _csv_plain(
    text: str, sep: str, header: list[str] | None, first_line: int
) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """CSV without quotes: one line is one record, fields split vectorized.

    Returns the records with the right number of fields (text columns, ``__rb_line``,
    ``__rb_raw``), the others (``__rb_line``, ``__rb_raw``, ``__rb_n``), and the header.
    """
    lines = pl.Series(RAW, [text]).str.split("\n").explode().str.strip_suffix("\r")
    if header is None:
        header = lines[0].split(sep) if lines.len() and lines[0] else []
        lines = lines.slice(1)
    frame = pl.DataFrame(lines).with_row_index(LINE, offset=first_line)
    frame = frame.filter(pl.col(RAW).str.strip_chars() != "")
    frame = frame.with_columns(pl.col(RAW).str.split(sep).alias("__rb_fields")).with_columns(
        pl.col("__rb_fields").list.len().alias("__rb_n")
    )
    width = len(header)
    ok = frame.filter(pl.col("__rb_n") == width)
    cols = [pl.col("__rb_fields").list.get(i).alias(name) for i, name in enumerate(header)]
    ok = ok.with_columns(cols).select(
        LINE, RAW, *(pl.when(pl.col(c) != "").then(pl.col(c)).alias(c) for c in dict.fromkeys(header))
    )
    ragged = frame.filter(pl.col("__rb_n") != width).select(LINE, RAW, pl.col("__rb_n").cast(pl.Int64))
    return ok, ragged, header


def _csv_quoted(
    text: str, sep: str, header: list[str] | None, first_line: int
) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """CSV with quotes, record by record (a quoted field may hold separators and newlines),
    keeping each record's first line number and its raw text. Same results as
    :func:`_csv_plain`."""
    consumed: list[str] = []

    def lines() -> Any:
        for line in io.StringIO(text, newline=""):
            consumed.append(line)
            yield line

    line_no = first_line - (1 if header is None else 0)
    columns: list[list[str | None]] = []
    good_lines: list[int] = []
    good_raw: list[str] = []
    bad: list[tuple[int, str, int]] = []
    for record in csv.reader(lines(), delimiter=sep):
        start, raw = line_no, "".join(consumed).rstrip("\r\n")
        line_no += len(consumed)
        consumed.clear()
        if header is None:
            header = record
            columns = [[] for _ in header]
            continue
        if not record or (len(record) == 1 and not record[0].strip() and len(header) != 1):
            continue  # a blank line
        if raw.count('"') % 2:  # a quoted field left open runs on to the end of the file
            bad.append((start, raw, -1))
            continue
        if len(record) != len(header):
            bad.append((start, raw, len(record)))
            continue
        good_lines.append(start)
        good_raw.append(raw)
        for col, value in zip(columns, record, strict=True):
            col.append(value if value != "" else None)
    header = header or []
    data: dict[str, pl.Series] = {
        LINE: pl.Series(good_lines, dtype=pl.Int64),
        RAW: pl.Series(good_raw, dtype=pl.String),
    }
    for name, col in zip(header, columns or [[] for _ in header], strict=True):
        data.setdefault(name, pl.Series(col, dtype=pl.String))
    ragged = pl.DataFrame(bad, schema={LINE: pl.Int64, RAW: pl.String, "__rb_n": pl.Int64}, orient="row")
    return pl.DataFrame(data), ragged, header


def _py_field(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def parse_json_lines(
    lines: pl.Series,
    schema: pl.Schema,
    *,
    source: str,
    first_line: int,
    on_error: OnError,
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Parse a Series of JSON-lines text against ``schema``; blank lines are skipped."""
    frame = pl.DataFrame({RAW: lines}).with_row_index(LINE, offset=first_line)
    frame = frame.filter(pl.col(RAW).str.strip_chars() != "")
    flat = {c: (t if _is_nested(t) else pl.String) for c, t in schema.items()}
    try:
        decoded = frame.with_columns(pl.col(RAW).str.json_decode(pl.Struct(flat)).alias("__rb_s")).unnest(
            "__rb_s"
        )
        return check_and_cast(decoded, schema, source=source, on_error=on_error)
    except pl.exceptions.PolarsError:
        pass  # some line does not decode: find it line by line below
    good_rows: dict[str, list[str | None]] = {c: [] for c in flat}
    good_idx: list[int] = []
    letters: list[dict[str, Any]] = []
    for line_no, text in frame.select(LINE, RAW).iter_rows():
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
            letters.append(
                {
                    LINE: line_no,
                    "source": source,
                    "position": f"line {line_no}",
                    "field": field,
                    "error": err,
                    "raw": text,
                }
            )
            continue
        assert isinstance(obj, dict)
        good_idx.append(line_no)
        for c in flat:
            good_rows[c].append(_py_field(obj.get(c)))
    good_frame = pl.DataFrame(
        {
            LINE: pl.Series(good_idx, dtype=pl.UInt32),
            **{c: pl.Series(v, dtype=pl.String) for c, v in good_rows.items()},
        }
    ).join(frame.select(LINE, RAW).cast({LINE: pl.UInt32}), on=LINE, how="left")
    nested = [c for c, t in schema.items() if _is_nested(t)]
    if nested:
        good_frame = good_frame.with_columns(pl.col(c).str.json_decode(schema[c]) for c in nested)
    good, dead = _check(good_frame, schema, source=source)
    return _settle(good, [_letters(letters), dead], source=source, on_error=on_error)
