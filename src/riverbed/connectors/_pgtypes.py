"""Type mapping between Polars and PostgreSQL, and the CSV forms COPY moves rows in.

Writing: each Polars column gets a PostgreSQL type (:func:`pg_type`) and an expression that
turns it into text COPY's CSV format reads (:func:`to_copy_text`). Reading: each result column's
PostgreSQL type gives a SQL expression that prints it in a form Polars parses exactly (epoch
microseconds for timestamps, days for dates, JSON for arrays) and the Polars type it becomes
(:func:`reader_for`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl

from riverbed._errors import SinkError

if TYPE_CHECKING:
    from polars._typing import PolarsDataType

_INTS: dict[Any, str] = {
    pl.Int8: "smallint",
    pl.Int16: "smallint",
    pl.Int32: "integer",
    pl.Int64: "bigint",
    pl.UInt8: "smallint",
    pl.UInt16: "integer",
    pl.UInt32: "bigint",
    pl.UInt64: "numeric(20,0)",
}
_SCALAR: dict[Any, str] = {
    **_INTS,
    pl.Float32: "real",
    pl.Float64: "double precision",
    pl.Boolean: "boolean",
    pl.String: "text",
    pl.Categorical: "text",
    pl.Date: "date",
    pl.Time: "time",
    pl.Binary: "bytea",
    pl.Null: "text",
}


def pg_type(dtype: PolarsDataType, column: str, where: str) -> str:
    """The PostgreSQL type a Polars column is stored as; a SinkError when there is none."""
    if isinstance(dtype, pl.Datetime):
        return "timestamptz" if dtype.time_zone else "timestamp"
    if isinstance(dtype, pl.Decimal):
        return f"numeric({dtype.precision},{dtype.scale})" if dtype.precision else "numeric"
    if isinstance(dtype, pl.Enum):
        return "text"
    if isinstance(dtype, pl.Struct):
        return "jsonb"
    if isinstance(dtype, pl.List):
        inner = dtype.inner
        if isinstance(inner, pl.List | pl.Struct | pl.Array) or inner == pl.Binary:
            raise _unmappable(dtype, column, where)
        return pg_type(inner, column, where) + "[]"
    base = dtype.base_type()
    if base in _SCALAR:
        return _SCALAR[base]
    raise _unmappable(dtype, column, where)


def _unmappable(dtype: PolarsDataType, column: str, where: str) -> SinkError:
    return SinkError(
        f"{where}: column {column!r} has type {dtype}, which has no PostgreSQL type here.\n"
        "  supported: integers, floats, Boolean, String, Categorical/Enum, Date, Time, Datetime "
        "(with or without time zone), Decimal, Binary, Struct (as jsonb), List of scalars (arrays)\n"
        "  hint: cast it first, e.g. .with_columns(pl.col(...).cast(pl.String))"
    )


def _array_literal(expr: pl.Expr, inner: PolarsDataType) -> pl.Expr:
    """A list column as PostgreSQL array text: ``{1,2,NULL}``, ``{"a","b\\"c"}``."""
    el = pl.element()
    if inner == pl.String or isinstance(inner, pl.Categorical | pl.Enum):
        s = (
            el.cast(pl.String)
            .str.replace_all("\\", "\\\\", literal=True)
            .str.replace_all('"', '\\"', literal=True)
        )
        item = pl.lit('"') + s + pl.lit('"')
    elif isinstance(inner, pl.Datetime | pl.Date | pl.Time):
        item = pl.lit('"') + el.cast(pl.String) + pl.lit('"')
    else:
        item = el.cast(pl.String)
    body = expr.list.eval(item.fill_null("NULL")).list.join(",")
    return pl.lit("{") + body + pl.lit("}")


def to_copy_text(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` with every column in a form ``COPY ... (FORMAT csv)`` reads back exactly."""
    exprs = []
    for name, dtype in df.schema.items():
        col = pl.col(name)
        if isinstance(dtype, pl.List):
            exprs.append(_array_literal(col, dtype.inner).alias(name))
        elif isinstance(dtype, pl.Struct):
            # json_encode writes a null struct as an object of nulls: keep it SQL NULL
            exprs.append(pl.when(col.is_null()).then(None).otherwise(col.struct.json_encode()).alias(name))
        elif dtype == pl.Binary:
            exprs.append((pl.lit("\\x") + col.bin.encode("hex")).alias(name))
        elif isinstance(dtype, pl.Categorical | pl.Enum):
            exprs.append(col.cast(pl.String))
        else:
            exprs.append(col)
    return df.select(exprs)


@dataclass(frozen=True)
class ColumnReader:
    """How one result column is read: its SQL output expression, CSV dtype and final dtype."""

    sql: str  # with ``{}`` where the quoted column goes
    csv: pl.DataType
    dtype: pl.DataType

    def finish(self, name: str) -> pl.Expr:
        col = pl.col(name)
        if self.csv == self.dtype:
            return col
        if self.dtype == pl.Boolean:
            return (col == "t").alias(name)
        if self.dtype == pl.Binary:
            return col.str.decode("hex").alias(name)
        if isinstance(self.dtype, pl.List):
            return col.str.json_decode(self.dtype).alias(name)
        if self.dtype == pl.Time:
            return (col * 1000).cast(pl.Time).alias(name)
        return col.cast(self.dtype).alias(name)


_READ_SCALAR: dict[str, tuple[str, pl.DataType, pl.DataType]] = {
    "int2": ("{}", pl.Int16(), pl.Int16()),
    "int4": ("{}", pl.Int32(), pl.Int32()),
    "int8": ("{}", pl.Int64(), pl.Int64()),
    "oid": ("{}", pl.Int64(), pl.Int64()),
    "float4": ("{}", pl.Float32(), pl.Float32()),
    "float8": ("{}", pl.Float64(), pl.Float64()),
    "bool": ("{}", pl.String(), pl.Boolean()),
    "bytea": ("encode({}, 'hex')", pl.String(), pl.Binary()),
    # epoch numbers rather than text: exact, and no time-zone setting of the session involved
    "timestamp": ("(extract(epoch from {}) * 1000000)::bigint", pl.Int64(), pl.Datetime("us")),
    "timestamptz": ("(extract(epoch from {}) * 1000000)::bigint", pl.Int64(), pl.Datetime("us", "UTC")),
    "date": ("({} - date '1970-01-01')", pl.Int32(), pl.Date()),
    "time": ("(extract(epoch from {}) * 1000000)::bigint", pl.Int64(), pl.Time()),
}
_ARRAY_INNER: dict[str, pl.DataType] = {
    "int2": pl.Int16(),
    "int4": pl.Int32(),
    "int8": pl.Int64(),
    "float4": pl.Float32(),
    "float8": pl.Float64(),
    "bool": pl.Boolean(),
    "text": pl.String(),
    "varchar": pl.String(),
}


def reader_for(typname: str, elem: str | None, precision: int | None, scale: int | None) -> ColumnReader:
    """How to read a column of PostgreSQL type ``typname`` (``elem``: an array's element type).

    Types without a better match are read as their text form (String): text, varchar, uuid,
    json(b), interval, enums...; ``numeric`` without a precision becomes Float64.
    """
    if typname in _READ_SCALAR:
        sql, csv, dtype = _READ_SCALAR[typname]
        return ColumnReader(sql, csv, dtype)
    if typname == "numeric":
        if precision and precision <= 38:
            dec = pl.Decimal(precision, scale or 0)
            return ColumnReader("{}", dec, dec)
        return ColumnReader("{}", pl.Float64(), pl.Float64())
    if elem is not None and elem in _ARRAY_INNER:
        return ColumnReader("array_to_json({})::text", pl.String(), pl.List(_ARRAY_INNER[elem]))
    return ColumnReader("{}::text", pl.String(), pl.String())


# which stored types accept which Polars types (for the check before the first commit)
_FAMILY: dict[str, set[str]] = {
    "int": {"int2", "int4", "int8", "numeric", "float4", "float8"},
    "float": {"float4", "float8", "numeric"},
    "bool": {"bool"},
    "text": {"text", "varchar", "bpchar", "json", "jsonb", "name", "citext"},
    "date": {"date", "timestamp", "timestamptz"},
    "timestamp": {"timestamp", "timestamptz"},
    "time": {"time", "timetz"},
    "numeric": {"numeric", "float4", "float8"},
    "bytea": {"bytea"},
    "jsonb": {"json", "jsonb", "text"},
}


def accepts(stored: str, dtype: PolarsDataType) -> bool:
    """Whether a column of PostgreSQL type ``stored`` (``udt_name``) can take ``dtype`` values."""
    if dtype == pl.Null:
        return True
    if isinstance(dtype, pl.List):
        return stored.startswith("_") and accepts(stored[1:], dtype.inner)
    if dtype.is_integer():
        family = "int"
    elif dtype.is_float():
        family = "float"
    elif dtype == pl.Boolean:
        family = "bool"
    elif isinstance(dtype, pl.Datetime):
        family = "timestamp"
    elif dtype == pl.Date:
        family = "date"
    elif dtype == pl.Time:
        family = "time"
    elif isinstance(dtype, pl.Decimal):
        family = "numeric"
    elif dtype == pl.Binary:
        family = "bytea"
    elif isinstance(dtype, pl.Struct):
        family = "jsonb"
    else:
        family = "text"
    return stored in _FAMILY[family]
