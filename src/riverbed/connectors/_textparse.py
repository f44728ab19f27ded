"""Parse text records (CSV fields, JSON lines) against a declared schema, record by record.

Bad records are reported with their file, line, field, raw text and the reason, and either
raise (``on_error="fail"``) or come back as dead letters (``on_error="dead_letter"``). The
work is vectorized; a per-line Python path runs only for JSON lines that do not decode.
"""

from __future__ import annotations

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
    text_cols = [c for c, t in schema.items() if not _is_nested(t)]
    parsed = raw.with_columns(
        *(_cast(c, schema[c]).alias(f"__rb_p_{c}") for c in text_cols),
    )
    fails = [
        (pl.col(c).is_not_null() & (pl.col(c) != "") & pl.col(f"__rb_p_{c}").is_null()).alias(
            f"__rb_f_{c}"
        )
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
        *(
            pl.col(f"__rb_p_{c}").alias(c) if c in text_cols else pl.col(c).cast(t)
            for c, t in schema.items()
        )
    )
    if bad.height == 0:
        return good, None
    # name the first failing field of each bad row
    field = pl.coalesce(
        *(pl.when(pl.col(f)).then(pl.lit(f.removeprefix("__rb_f_"))) for f in flag_cols)
    )
    bad = bad.with_columns(__rb_field=field)
    bad = bad.with_columns(
        __rb_value=pl.coalesce(
            *(
                pl.when(pl.col("__rb_field") == c).then(pl.col(c))
                for c in text_cols
                if schema[c] != pl.String
            )
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
    if on_error == "fail":
        row = letters.row(0, named=True)
        raise RecordError(
            f"{source}: {row['position']}, column {row['field']!r}: {row['error']}\n"
            f"  record: {row['raw']}\n"
            f"  hint: fix the record, or read with on_error='dead_letter' to divert bad rows",
            source=source,
            position=row["position"],
            field=row["field"],
            raw=row["raw"],
        )
    return good, letters.cast(DEAD_LETTER_SCHEMA)  # type: ignore[arg-type]


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

    ``first_line`` is the file line number of the first data row.
    """
    try:
        raw = pl.read_csv(
            data,
            has_header=has_header,
            new_columns=header,
            infer_schema=False,
            separator=separator,
            row_index_name=LINE,
            row_index_offset=first_line,
            truncate_ragged_lines=False,
            raise_if_empty=False,
        )
    except pl.exceptions.PolarsError as exc:
        raise SourceError(f"{source}: cannot read as CSV: {str(exc).splitlines()[0]}") from None
    missing = [c for c in schema.names() if c not in raw.columns]
    if missing:
        present = [c for c in raw.columns if c != LINE]
        raise SourceError(
            f"{source}: the declared schema names column(s) {missing} that the CSV header "
            f"does not have.\n  header: {present}"
        )
    data_cols = [c for c in raw.columns if c != LINE]
    raw = raw.with_columns(
        pl.concat_str([pl.col(c).fill_null("") for c in data_cols], separator=separator).alias(RAW)
    )
    return check_and_cast(raw, schema, source=source, on_error=on_error)


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
        decoded = frame.with_columns(
            pl.col(RAW).str.json_decode(pl.Struct(flat)).alias("__rb_s")
        ).unnest("__rb_s")
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
            if on_error == "fail":
                raise RecordError(
                    f"{source}: line {line_no}: {err}\n  record: {text[:200]}\n"
                    "  hint: fix the record, or read with on_error='dead_letter'",
                    source=source,
                    position=f"line {line_no}",
                    field=field,
                    raw=text,
                )
            letters.append(
                {
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
    good, dead = check_and_cast(good_frame, schema, source=source, on_error=on_error)
    extra = pl.DataFrame(letters, schema=DEAD_LETTER_SCHEMA)
    if dead is not None:
        extra = pl.concat([extra, dead])
    return good, (extra if extra.height else None)
