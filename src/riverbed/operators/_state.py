"""Operator state snapshots: named frames as one compact Arrow IPC blob."""

from __future__ import annotations

import io
import json
import struct

import polars as pl

_MAGIC = b"RBS1"


def encode(frames: dict[str, pl.DataFrame | None]) -> bytes:
    """Pack named frames (None: absent) into bytes.

    Examples
    --------
    >>> blob = encode({"state": pl.DataFrame({"k": [1]}), "ends": None})
    >>> decode(blob)["state"]["k"].to_list(), decode(blob)["ends"]
    ([1], None)
    """
    parts: list[bytes] = []
    index: dict[str, int | None] = {}
    for name, df in frames.items():
        if df is None:
            index[name] = None
            continue
        buf = io.BytesIO()
        df.write_ipc(buf, compression="lz4")
        parts.append(buf.getvalue())
        index[name] = len(parts[-1])
    head = json.dumps(index).encode()
    return _MAGIC + struct.pack("<I", len(head)) + head + b"".join(parts)


def decode(blob: bytes) -> dict[str, pl.DataFrame | None]:
    """Unpack :func:`encode`'s bytes."""
    if blob[:4] != _MAGIC:
        raise ValueError("not a riverbed state snapshot")
    (n,) = struct.unpack("<I", blob[4:8])
    index = json.loads(blob[8 : 8 + n])
    pos = 8 + n
    out: dict[str, pl.DataFrame | None] = {}
    for name, size in index.items():
        if size is None:
            out[name] = None
            continue
        out[name] = pl.read_ipc(io.BytesIO(blob[pos : pos + size]))
        pos += size
    return out
