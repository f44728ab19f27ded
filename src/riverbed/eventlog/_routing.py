"""Routing rows to partitions: a stable hash of the key column, or round-robin slices.

The hash must not change between processes or library versions (a key's records must keep
landing in the same partition for the life of a topic), so we do not use ``Expr.hash``, whose
values Polars only promises within one version. Integers, booleans and temporal values are
mixed with the SplitMix64 finaliser as Polars ``UInt64`` arithmetic (vectorised, wrapping);
strings and binary values are hashed once per distinct value with CRC32 and then mixed the
same way. Rows whose key is null all go to partition 0.
"""

from __future__ import annotations

import zlib

import polars as pl

from riverbed._errors import PlanError

MIN_SLICE_ROWS = 4_096
"""Without a key, appends are cut into slices of at least this many rows (see below)."""

_U64 = pl.UInt64
_GOLDEN = 0x9E3779B97F4A7C15
_MUL1 = 0xBF58476D1CE4E5B9
_MUL2 = 0x94D049BB133111EB


def _mix(x: pl.Expr) -> pl.Expr:
    """SplitMix64 finaliser on a UInt64 expression (shifts written as floor division)."""
    z = x + pl.lit(_GOLDEN, dtype=_U64)
    z = z.xor(z // (1 << 30)) * pl.lit(_MUL1, dtype=_U64)
    z = z.xor(z // (1 << 27)) * pl.lit(_MUL2, dtype=_U64)
    return z.xor(z // (1 << 31))


def _crc_per_value(s: pl.Series) -> pl.Series:
    """CRC32 of each value's bytes (UTF-8 for strings), computed once per distinct value."""
    uniq = s.drop_nulls().unique()
    if uniq.dtype == pl.Binary:
        crcs = [zlib.crc32(v) for v in uniq.to_list()]
    else:
        crcs = [zlib.crc32(v.encode("utf-8")) for v in uniq.to_list()]
    return s.replace_strict(uniq, pl.Series(crcs, dtype=_U64), default=None, return_dtype=_U64)


def key_hash(s: pl.Series) -> pl.Series:
    """A stable 64-bit hash of every value of ``s`` (null for null keys).

    Examples
    --------
    >>> a = key_hash(pl.Series([1, 2, None], dtype=pl.Int32))
    >>> b = key_hash(pl.Series([1, 2, None], dtype=pl.Int64))
    >>> a.to_list() == b.to_list()
    True
    >>> key_hash(pl.Series(["x"])).to_list() == key_hash(pl.Series(["x"])).to_list()
    True
    """
    dtype = s.dtype
    if dtype.is_integer() or dtype == pl.Boolean or dtype.is_temporal():
        phys = s.to_physical()
        wide = phys if phys.dtype == pl.UInt64 else phys.cast(pl.Int64)
        bits = wide.reinterpret(signed=False)
    elif dtype in (pl.String, pl.Categorical, pl.Binary) or isinstance(dtype, pl.Enum):
        bits = _crc_per_value(s if dtype == pl.Binary else s.cast(pl.String))
    elif dtype.is_float() or dtype.is_decimal():
        bits = _crc_per_value(s.cast(pl.String))
    else:
        raise PlanError(
            f"cannot route by a key column of type {dtype}: expected an integer, string, "
            "binary, boolean, temporal, float or decimal column.\n"
            "  hint: derive a string key, e.g. pl.col(...).cast(pl.String)"
        )
    return pl.select(_mix(pl.lit(bits.rename(s.name)))).to_series()


def partition_of(s: pl.Series, partitions: int) -> pl.Series:
    """The partition (UInt32) of every key in ``s``; null keys go to partition 0.

    Examples
    --------
    >>> partition_of(pl.Series(["a", "b", None]), 4).to_list()[2]
    0
    """
    h = key_hash(s)
    return (h % partitions).fill_null(0).cast(pl.UInt32).rename("partition")


def split_by_key(df: pl.DataFrame, key: str, partitions: int) -> list[tuple[int, pl.DataFrame]]:
    """Split ``df`` by the hash of column ``key``, keeping row order within each partition."""
    if key not in df.columns:
        raise PlanError(f"key column {key!r} is not in the appended frame; its columns are {df.columns}")
    parts = partition_of(df.get_column(key), partitions)
    if partitions == 1:
        return [(0, df)]
    tag = "__riverbed_partition__"
    groups = df.with_columns(parts.alias(tag)).partition_by(
        tag, maintain_order=True, include_key=False, as_dict=True
    )
    return sorted((int(k[0]), frame) for k, frame in groups.items())


def split_round_robin(
    df: pl.DataFrame, partitions: int, start: int, min_slice_rows: int = MIN_SLICE_ROWS
) -> tuple[list[tuple[int, pl.DataFrame]], int]:
    """Spread an append without a key over the partitions, from partition ``start``.

    An append of fewer than ``2 * min_slice_rows`` rows goes whole to partition ``start``
    (one stored batch, like Kafka's sticky partitioner); a bigger one is cut into contiguous,
    near-equal, zero-copy slices of at least ``min_slice_rows`` rows, one per partition, up
    to all of them. Returns the slices and the partition the next append starts at, so that
    over many appends every partition gets its share.

    Examples
    --------
    >>> df = pl.DataFrame({"x": range(10)})
    >>> [(p, f.height) for p, f in split_round_robin(df, 4, 1, min_slice_rows=3)[0]]
    [(1, 4), (2, 3), (3, 3)]
    """
    n = df.height
    if n == 0:
        return [], start
    used = min(partitions, max(1, n // min_slice_rows))
    size, extra = divmod(n, used)
    out: list[tuple[int, pl.DataFrame]] = []
    pos = 0
    for i in range(used):
        length = size + (1 if i < extra else 0)
        out.append(((start + i) % partitions, df.slice(pos, length)))
        pos += length
    # the next append starts right after the last partition that got an extra row
    step = extra if used == partitions else used
    return sorted(out, key=lambda item: item[0]), (start + step) % partitions
