"""Arrow IPC encoding of stored batches, their checksums and the topic schema.

Every batch is stored as one Arrow IPC *stream* (schema + record batches) so a reader can
decode it without copying the column buffers: the bytes come out of SQLite once and Polars
columns point straight into them.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import polars as pl
import pyarrow as pa

from riverbed._errors import PlanError


@dataclass(frozen=True)
class Encoded:
    """One batch ready to be stored: the IPC bytes, their length, CRC32 and row count."""

    data: pa.Buffer
    nbytes: int
    crc32: int
    count: int


def encode(df: pl.DataFrame) -> Encoded:
    """Encode ``df`` as one Arrow IPC stream and checksum it.

    Examples
    --------
    >>> enc = encode(pl.DataFrame({"a": [1, 2, 3]}))
    >>> enc.count, decode(enc.data.to_pybytes()).to_series().to_list()
    (3, [1, 2, 3])
    """
    try:
        table = df.to_arrow()
    except Exception as exc:  # polars raises several types for Object columns
        raise PlanError(
            f"cannot store this frame in the log: {exc}\n"
            "  hint: the log stores Arrow data; cast Object columns to a concrete type"
        ) from exc
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    buf = sink.getvalue()
    return Encoded(data=buf, nbytes=buf.size, crc32=zlib.crc32(buf), count=df.height)


def checksum(blob: bytes) -> int:
    """The CRC32 of ``blob`` as stored next to it."""
    return zlib.crc32(blob)


def decode(blob: bytes) -> pl.DataFrame:
    """Decode one stored IPC stream into a DataFrame (zero-copy for fixed-width columns)."""
    table = pa.ipc.open_stream(pa.py_buffer(blob)).read_all()
    out = pl.from_arrow(table, rechunk=False)
    assert isinstance(out, pl.DataFrame)
    return out


def encode_schema(df: pl.DataFrame) -> bytes:
    """The schema of ``df`` as the IPC stream of an empty frame (what the topic keeps)."""
    blob: bytes = encode(df.clear()).data.to_pybytes()
    return blob


def decode_schema(blob: bytes) -> pl.DataFrame:
    """An empty frame with the stored schema."""
    return decode(blob).clear()


def format_schema(schema: pl.Schema) -> str:
    """Render a schema compactly: ``{a: Int64, b: String}``."""
    return "{" + ", ".join(f"{name}: {dtype}" for name, dtype in schema.items()) + "}"


def schema_differences(expected: pl.Schema, got: pl.Schema) -> list[str]:
    """Human-readable differences between the topic's schema and an append's schema."""
    out: list[str] = []
    for name, dtype in expected.items():
        if name not in got:
            out.append(f"column {name!r} ({dtype}) is missing from the append")
        elif got[name] != dtype:
            out.append(f"column {name!r} is {dtype} in the topic but {got[name]} in the append")
    out.extend(
        f"column {name!r} ({dtype}) is not in the topic"
        for name, dtype in got.items()
        if name not in expected
    )
    return out
