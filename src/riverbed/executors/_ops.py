"""Operator logic shared by the batch and stream executors."""

from __future__ import annotations

from typing import Any

import polars as pl

from riverbed._errors import RiverbedError
from riverbed._plan import MapBatchesNode, MapRowsNode, where


class UserFunctionError(RiverbedError):
    """A user function (map_batches / map_rows) raised or returned something unusable."""


def apply_map_batches(node: MapBatchesNode, df: pl.DataFrame) -> pl.DataFrame:
    """Run a user DataFrame -> DataFrame function, with a message that names it."""
    try:
        out = node.fn(df)
    except Exception as exc:
        raise UserFunctionError(
            f"step {node.id!r}: {where(node.fn)} raised {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(out, pl.DataFrame):
        raise UserFunctionError(
            f"step {node.id!r}: {where(node.fn)} must return a polars DataFrame, got {type(out).__name__}"
        )
    if node.schema is not None and out.schema != node.schema:
        try:
            internal = [c for c in out.columns if c.startswith("__rb_")]  # stream mode's watermark
            out = out.select(*(pl.col(c).cast(t) for c, t in node.schema.items()), *internal)
        except pl.exceptions.PolarsError as exc:
            raise UserFunctionError(
                f"step {node.id!r}: {where(node.fn)} returned {dict(out.schema)}, "
                f"declared {dict(node.schema)}: {exc}"
            ) from None
    return out


def apply_map_rows(node: MapRowsNode, df: pl.DataFrame, origin: list[int] | None = None) -> pl.DataFrame:
    """Run a user dict -> dict | None function on every row (the slow path).

    ``origin``, when given, receives the input row index of every output row.
    """
    rows: list[dict[str, Any]] = []
    fn = node.fn
    for i, row in enumerate(df.iter_rows(named=True)):
        try:
            out = fn(row)
        except Exception as exc:
            raise UserFunctionError(
                f"step {node.id!r}: {where(fn)} raised {type(exc).__name__}: {exc}\n"
                f"  on row {i} of the batch: {row}"
            ) from exc
        if out is None:
            continue
        if not isinstance(out, dict):
            raise UserFunctionError(
                f"step {node.id!r}: {where(fn)} must return a dict or None, got "
                f"{type(out).__name__} for row {row}"
            )
        rows.append(out)
        if origin is not None:
            origin.append(i)
    if node.schema is not None:
        return pl.DataFrame(rows, schema=node.schema)
    if not rows:
        # no declared schema and no row to learn one from: keep the input's columns, so steps
        # that use them still work on an empty result (declare schema= for new columns)
        return pl.DataFrame(schema=df.schema)
    return pl.DataFrame(rows, infer_schema_length=None)
