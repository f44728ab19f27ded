"""Types between riverbed (Polars) and Spark: schemas, and Arrow batches cast both ways.

Spark refuses some Arrow types riverbed's frames carry (unsigned integers, large lists and
strings, string views, ms/ns timestamps), and matches the columns of a ``mapInArrow`` result
by position. So every batch riverbed hands to Spark is cast to a *Spark-safe* Polars schema
(:func:`spark_safe`) and then to its exact Arrow schema (:func:`arrow_schema`), in the order
declared; and every batch that comes back is cast to the schema riverbed resolved
(:func:`to_riverbed`).
"""

from __future__ import annotations

from typing import Any

import polars as pl
import pyarrow as pa

from riverbed._errors import PlanError


def spark_safe(dtype: pl.DataType) -> pl.DataType:
    """The type a column of ``dtype`` takes on Spark (wider where Spark has no such type).

    Examples
    --------
    >>> spark_safe(pl.UInt32), spark_safe(pl.Datetime("ms"))
    (Int64, Datetime(time_unit='us', time_zone=None))
    """
    if dtype == pl.UInt8:
        return pl.Int16()
    if dtype == pl.UInt16:
        return pl.Int32()
    if dtype in (pl.UInt32, pl.UInt64):
        return pl.Int64()  # UInt64 values above 2**63 - 1 do not fit: the cast fails loudly
    if isinstance(dtype, pl.Datetime):
        return pl.Datetime("us", "UTC" if dtype.time_zone else None)
    if isinstance(dtype, pl.Duration):
        return pl.Duration("us")
    if isinstance(dtype, pl.Categorical | pl.Enum):
        return pl.String()
    if isinstance(dtype, pl.List | pl.Array):
        return pl.List(spark_safe(_instance(dtype.inner)))
    if isinstance(dtype, pl.Struct):
        return pl.Struct({f.name: spark_safe(_instance(f.dtype)) for f in dtype.fields})
    return dtype


def _instance(dtype: Any) -> pl.DataType:
    """A data type as an instance (``pl.Int64`` -> ``pl.Int64()``)."""
    return dtype() if isinstance(dtype, type) else dtype  # type: ignore[no-any-return]


def safe_schema(schema: pl.Schema) -> pl.Schema:
    """:func:`spark_safe` of every column."""
    return pl.Schema({k: spark_safe(v) for k, v in schema.items()})


_SIMPLE: dict[pl.DataType, tuple[str, pa.DataType]] = {
    pl.Boolean(): ("boolean", pa.bool_()),
    pl.Int8(): ("byte", pa.int8()),
    pl.Int16(): ("short", pa.int16()),
    pl.Int32(): ("int", pa.int32()),
    pl.Int64(): ("long", pa.int64()),
    pl.Float32(): ("float", pa.float32()),
    pl.Float64(): ("double", pa.float64()),
    pl.String(): ("string", pa.string()),
    pl.Binary(): ("binary", pa.binary()),
    pl.Date(): ("date", pa.date32()),
    pl.Null(): ("string", pa.string()),
}


def _types(dtype: pl.DataType, where: str) -> tuple[str, pa.DataType]:
    """(Spark DDL type, Arrow type) of a Spark-safe Polars type."""
    if dtype in _SIMPLE:
        return _SIMPLE[dtype]
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone:
            return "timestamp", pa.timestamp("us", "UTC")
        return "timestamp_ntz", pa.timestamp("us")
    if isinstance(dtype, pl.Duration):
        return "interval day to second", pa.duration("us")
    if isinstance(dtype, pl.Decimal):
        precision = dtype.precision or 38
        return f"decimal({precision},{dtype.scale})", pa.decimal128(precision, dtype.scale)
    if isinstance(dtype, pl.List):
        ddl, arrow = _types(_instance(dtype.inner), where)
        return f"array<{ddl}>", pa.list_(arrow)
    if isinstance(dtype, pl.Struct):
        parts = [(f.name, *_types(_instance(f.dtype), where)) for f in dtype.fields]
        ddl = ", ".join(f"`{n}`: {d}" for n, d, _ in parts)
        return f"struct<{ddl}>", pa.struct([pa.field(n, a) for n, _, a in parts])
    raise PlanError(
        f"{where}: columns of type {dtype} cannot be handed to Spark.\n"
        "  hint: cast the column to a plain type (e.g. pl.col(...).cast(pl.String)) before this step"
    )


def ddl(schema: pl.Schema, where: str) -> str:
    """The Spark DDL schema (``a long, b string``) of a Polars schema, after :func:`spark_safe`.

    Examples
    --------
    >>> ddl(pl.Schema({"a": pl.UInt32, "b": pl.List(pl.String)}), "step x")
    '`a` long, `b` array<string>'
    """
    return ", ".join(f"`{k}` {_types(spark_safe(v), where)[0]}" for k, v in schema.items())


def arrow_schema(schema: pl.Schema, where: str) -> pa.Schema:
    """The exact Arrow schema Spark accepts for a Polars schema, after :func:`spark_safe`."""
    return pa.schema([pa.field(k, _types(spark_safe(v), where)[1]) for k, v in schema.items()])


def to_spark(df: pl.DataFrame, schema: pl.Schema, target: pa.Schema) -> pa.Table:
    """``df`` with exactly the columns of ``schema``, in its order, as Arrow of ``target``."""
    safe = safe_schema(schema)
    table = df.select([pl.col(k).cast(v) for k, v in safe.items()]).to_arrow()
    return table.cast(target)


def to_riverbed(table: pa.Table | pa.RecordBatch, schema: pl.Schema) -> pl.DataFrame:
    """An Arrow batch from Spark as a Polars frame of the columns of ``schema`` (by name, in
    its order), cast back to riverbed's types (unsigned integers, time units, time zones)."""
    got = pl.from_arrow(table)
    assert isinstance(got, pl.DataFrame)
    exprs = []
    for name, dtype in schema.items():
        col = pl.col(name)
        have = got.schema.get(name)
        if isinstance(dtype, pl.Datetime) and isinstance(have, pl.Datetime):
            if dtype.time_zone and not have.time_zone:
                col = col.dt.replace_time_zone("UTC")
            if dtype.time_zone:
                col = col.dt.convert_time_zone(dtype.time_zone)
            elif have.time_zone:
                col = col.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        exprs.append(col.cast(dtype).alias(name))
    return got.select(exprs)
