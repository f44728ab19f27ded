"""User functions: ``map_batches`` (DataFrame -> DataFrame) and ``map_rows`` (dict -> dict).

A user function sees the same columns in both modes: never riverbed's hidden columns. In
stream mode each output row keeps the watermark of the row it came from, so lateness stays
exact:

* ``map_rows`` knows each output row's input row;
* ``map_batches``: when the function keeps the number of rows and the event-time column as
  they were, rows keep their watermarks by position (the (event time, watermark) pairs are
  the same, which is all lateness looks at); when it returns input rows unchanged (a filter,
  a reordering, a projection), each output row is matched to its input row by content (the
  n-th of identical rows to the n-th), exact whatever the order; otherwise an output row
  takes the smallest watermark of the input rows with its event time, and a row whose event
  time is new the smallest of the micro-batch. The fall-backs lean towards an *earlier*
  watermark, which can make a late event on time but never an on-time event late.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from riverbed._cols import OCC, WM, visible
from riverbed._errors import UserFunctionError
from riverbed._plan import MapBatchesNode, MapRowsNode, where
from riverbed.operators.base import Cols, Frame, Operator, Outputs, Runtime, StepContext, Tick, operator


class _UserOp(Operator):
    node: MapBatchesNode | MapRowsNode

    def needs(self, downstream: Cols, ctx: StepContext) -> Cols:
        return None

    def lower(self, inputs: list[pl.LazyFrame], ctx: StepContext) -> Outputs:
        return Outputs(self.call(inputs[0].collect(), None).lazy())

    def build(self, ctx: StepContext, resume: bytes | None) -> Runtime:
        return UserRuntime(self, ctx)

    def call(self, df: pl.DataFrame, origin: list[int] | None) -> pl.DataFrame:
        raise NotImplementedError

    def declared(self, df: pl.DataFrame) -> pl.DataFrame:
        """``df`` cast to the declared schema, with a clear error when it does not fit."""
        schema = self.node.schema
        if schema is None or df.schema == schema:
            return df
        try:
            return df.select(*(pl.col(c).cast(t) for c, t in schema.items()))
        except pl.exceptions.PolarsError as exc:
            raise UserFunctionError(
                f"step {self.id!r}: {where(self.node.fn)} returned {dict(df.schema)}, "
                f"declared {dict(schema)}: {exc}"
            ) from None


@operator(MapBatchesNode)
class MapBatches(_UserOp):
    """A DataFrame -> DataFrame function per micro-batch. Supports: batch, stream."""

    node: MapBatchesNode

    def output_schema(self, inputs: list[pl.Schema], ctx: StepContext) -> pl.Schema | None:
        if self.node.schema is not None:
            return self.node.schema
        try:
            return self.node.fn(pl.DataFrame(schema=inputs[0])).schema
        except Exception:
            return None  # learnt from the first rows at run time

    def call(self, df: pl.DataFrame, origin: list[int] | None) -> pl.DataFrame:
        fn = self.node.fn
        try:
            out = fn(df)
        except Exception as exc:
            raise UserFunctionError(
                f"step {self.id!r}: {where(fn)} raised {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(out, pl.DataFrame):
            raise UserFunctionError(
                f"step {self.id!r}: {where(fn)} must return a polars DataFrame, got {type(out).__name__}"
            )
        return self.declared(out)


@operator(MapRowsNode)
class MapRows(_UserOp):
    """A dict -> dict | None function per row: the documented slow path. Supports: batch, stream."""

    node: MapRowsNode

    def output_schema(self, inputs: list[pl.Schema], ctx: StepContext) -> pl.Schema | None:
        return self.node.schema

    def call(self, df: pl.DataFrame, origin: list[int] | None) -> pl.DataFrame:
        rows: list[dict[str, Any]] = []
        fn = self.node.fn
        for i, row in enumerate(df.iter_rows(named=True)):
            try:
                out = fn(row)
            except Exception as exc:
                raise UserFunctionError(
                    f"step {self.id!r}: {where(fn)} raised {type(exc).__name__}: {exc}\n"
                    f"  on row {i} of the batch: {row}"
                ) from exc
            if out is None:
                continue
            if not isinstance(out, dict):
                raise UserFunctionError(
                    f"step {self.id!r}: {where(fn)} must return a dict or None, got "
                    f"{type(out).__name__} for row {row}"
                )
            rows.append(out)
            if origin is not None:
                origin.append(i)
        if self.node.schema is not None:
            return pl.DataFrame(rows, schema=self.node.schema)
        if not rows:
            # no declared schema and no row to learn one from: keep the input's columns, so
            # steps that use them still work on an empty result (declare schema= for new ones)
            return pl.DataFrame(schema=df.schema)
        return pl.DataFrame(rows, infer_schema_length=None)


class UserRuntime(Runtime):
    """Stream form of a user function: visible columns in, watermarks carried to the output."""

    def __init__(self, op: _UserOp, ctx: StepContext) -> None:
        self.op = op
        self.ctx = ctx
        self.known: pl.Schema | None = op.node.schema or ctx.output

    def process(self, inputs: list[Frame], tick: Tick) -> Outputs:
        src = inputs[0].collect() if isinstance(inputs[0], pl.LazyFrame) else inputs[0]
        if not src.height:
            known = self.op.node.schema or self.known
            df = pl.DataFrame(schema=known) if known is not None else pl.DataFrame()
            if WM in src.columns and df.width:
                df = df.with_columns(pl.lit(None, pl.Int64).alias(WM))
            return Outputs(df)
        origin: list[int] = []
        df = self.op.call(visible(src), origin)
        if df.height:
            self.known = df.schema
        else:  # the function emptied this batch: the columns it gives when it gives rows
            known = self.op.node.schema or self.known
            df = pl.DataFrame(schema=known) if known is not None else pl.DataFrame()
            if not df.width:
                return Outputs(df)
        if WM in src.columns:
            df = df.with_columns(self.watermarks(src, df, origin))
        return Outputs(df)

    def watermarks(self, src: pl.DataFrame, df: pl.DataFrame, origin: list[int]) -> pl.Series:
        """Each output row's watermark: see the module docstring."""
        wm = src.get_column(WM)
        if isinstance(self.op, MapRows):
            return wm.gather(origin).alias(WM)
        et = self.ctx.event_time
        same_times = et is not None and et in df.columns and df.height == src.height
        if same_times and et is not None and df.get_column(et).equals(src.get_column(et)):
            return wm
        matched = _by_content(src, df)
        if matched is not None:
            return matched
        floor = int(wm.min())  # type: ignore[arg-type]
        if et is None or et not in df.columns or df.schema[et] != src.schema[et]:
            return pl.repeat(floor, df.height, dtype=pl.Int64, eager=True).alias(WM)
        by_time = src.group_by(et).agg(pl.col(WM).min())
        joined = df.select(et).join(by_time, on=et, how="left", maintain_order="left")
        return joined.get_column(WM).fill_null(floor)


def _by_content(src: pl.DataFrame, df: pl.DataFrame) -> pl.Series | None:
    """Watermarks of output rows that are input rows unchanged (the n-th of identical rows
    matched to the n-th), or None when some output row is not an input row."""
    cols = [c for c in df.columns if c in src.schema and src.schema[c] == df.schema[c]]
    if not cols or len(cols) != df.width:
        return None
    occ = pl.int_range(pl.len()).over(cols).alias(OCC)
    try:
        left = df.select(cols).with_columns(occ)
        right = src.select(*cols, WM).with_columns(occ)
        joined = left.join(right, on=[*cols, OCC], how="left", maintain_order="left", nulls_equal=True)
    except pl.exceptions.PolarsError:  # columns that cannot be grouped or joined on
        return None
    got = joined.get_column(WM)
    return None if got.null_count() else got
