"""Kafka connector: vectorized JSON decoding of message values; bad values become dead letters."""

from __future__ import annotations

import io
import json

import polars as pl

_DEAD_LETTER_DECODE_LIMIT = 8  # below this many values, a failed decode goes record by record


def _read_ndjson(values: list[bytes], schema: pl.Schema) -> pl.DataFrame:
    return pl.read_ndjson(io.BytesIO(b"\n".join(values)), schema=schema)


def _diagnose(value: bytes, schema: pl.Schema, polars_error: str) -> tuple[str | None, str]:
    """Say why one message does not decode: (field or None, reason). Slow path, bad rows only."""
    try:
        obj = json.loads(value)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"invalid JSON: {exc}"
    if not isinstance(obj, dict):
        return None, f"expected a JSON object, got {type(obj).__name__}: {value[:80]!r}"
    for name, dtype in schema.items():
        if name not in obj:
            continue
        one = json.dumps({name: obj[name]}).encode()
        try:
            pl.read_ndjson(io.BytesIO(one), schema={name: dtype})
        except (pl.exceptions.PolarsError, pl.exceptions.PanicException) as exc:
            got = json.dumps(obj[name])
            got = got if len(got) <= 80 else got[:77] + "..."
            reason = str(exc).split("\n", 1)[0]
            return name, f"expected {dtype}, got {got} ({reason})"
    return None, f"does not fit the schema: {polars_error}"


def decode_values(
    values: list[bytes | None], schema: pl.Schema
) -> tuple[pl.DataFrame, list[tuple[int, str | None, str]]]:
    """Decode JSON message values into a frame of ``schema``.

    Returns the rows that decode, in order, and ``(index, field, reason)`` for those that
    do not. One ``read_ndjson`` call when every value is good; bad values are found by
    bisection.

    Examples
    --------
    >>> df, bad = decode_values([b'{"a": 1}', b"oops", b'{"a": 3}'], pl.Schema({"a": pl.Int64}))
    >>> df["a"].to_list(), [(i, f) for i, f, _ in bad]
    ([1, 3], [(1, None)])
    """
    bad: list[tuple[int, str | None, str]] = []
    index: list[int] | None = None  # position in ``values`` of each entry of ``good``
    good: list[bytes]
    if all(values):
        good = values  # type: ignore[assignment]  # all() proved there is no None/empty
    else:
        index = [i for i, v in enumerate(values) if v]
        bad = [(i, None, "empty message value (no JSON)") for i, v in enumerate(values) if not v]
        good = [v for v in values if v]
    if good and b"\n".join(good).count(b"\n") != len(good) - 1:
        # Some values span lines (pretty-printed JSON). Valid JSON has newlines only between
        # tokens, so once a value parses, turning them into spaces keeps its meaning.
        where = index if index is not None else list(range(len(good)))
        index, flat = [], []
        for i, v in zip(where, good, strict=True):
            if b"\n" in v:
                try:
                    json.loads(v)
                except (ValueError, UnicodeDecodeError) as exc:
                    bad.append((i, None, f"invalid JSON: {exc}"))
                    continue
                v = v.replace(b"\r\n", b" ").replace(b"\n", b" ")
            index.append(i)
            flat.append(v)
        good = flat
    if not good:
        bad.sort(key=lambda t: t[0])
        return pl.DataFrame(schema=schema), bad
    frames: list[pl.DataFrame] = []
    found: list[tuple[int, str | None, str]] = []
    _bisect(good, 0, schema, frames, found)
    bad.extend((index[i] if index is not None else i, f, r) for i, f, r in found)
    bad.sort(key=lambda t: t[0])
    if not frames:
        return pl.DataFrame(schema=schema), bad
    out = frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical")
    return out, bad


def _bisect(
    values: list[bytes],
    base: int,
    schema: pl.Schema,
    frames: list[pl.DataFrame],
    bad: list[tuple[int, str | None, str]],
) -> None:
    try:
        df = _read_ndjson(values, schema)
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException):
        pass
    else:
        if df.height == len(values):  # else a value held no JSON object (blank)
            frames.append(df)
            return
    if len(values) <= _DEAD_LETTER_DECODE_LIMIT:
        for i, v in enumerate(values):
            try:
                df = _read_ndjson([v], schema)
                if df.height != 1:
                    raise pl.exceptions.ComputeError("a message value holds no JSON object")
            except (pl.exceptions.PolarsError, pl.exceptions.PanicException) as exc:
                fld, reason = _diagnose(v, schema, str(exc).split("\n", 1)[0])
                bad.append((base + i, fld, reason))
            else:
                frames.append(df)
        return
    mid = len(values) // 2
    _bisect(values[:mid], base, schema, frames, bad)
    _bisect(values[mid:], base + mid, schema, frames, bad)
