"""The read operator: a source's rows, with dead letters as its side output ``dead``.

Rows without an event time belong to no window: both modes send them to dead letters (a
source that knows file and line, like ``rb.files``, rejects them itself when the context
names the event-time column, and then also honours ``on_error="fail"``).

In stream mode the executor pulls micro-batches from the source's partitions and stamps each
row with the watermark at its arrival (``riverbed.executors._watermarks``); this operator's
runtime then only splits off rows without an event time.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from riverbed._cols import visible
from riverbed._errors import RecordError
from riverbed._plan import ReadNode, did_you_mean, fmt_cols
from riverbed.connectors.base import DEAD_LETTER_SCHEMA
from riverbed.operators.base import Cols, Frame, Operator, Outputs, Runtime, StepContext, Tick, operator
from riverbed.windows import event_time_expr


def _letters(node: ReadNode, rows: pl.LazyFrame, position: str) -> pl.LazyFrame:
    et = node.event_time or ""
    return rows.select(
        source=pl.lit(node.source.describe()),
        position=pl.lit(position),
        field=pl.lit(et),
        error=pl.lit(f"event-time column {et!r} is null"),
        raw=pl.struct(pl.all()).struct.json_encode(),
    )


def _no_time(node: ReadNode, first: pl.DataFrame, mode: str) -> RecordError:
    et = node.event_time or ""
    raw = first.select(pl.struct(pl.all()).struct.json_encode()).item()
    return RecordError(
        f"step {node.id!r}: a record of {node.source.describe()} has no event time (column {et!r} "
        f"is null): {raw}\n  hint: on_error='dead_letter' sends such records to dead letters",
        source=node.source.describe(),
        position=mode,
        field=et,
        raw=raw,
    )


@operator(ReadNode)
class Read(Operator):
    """Rows of a source. Supports: batch, stream."""

    node: ReadNode
    ports = ("dead",)

    def event_time(self, inputs: list[str | None]) -> str | None:
        return self.node.event_time

    def output_schema(self, inputs: list[pl.Schema], ctx: StepContext) -> pl.Schema | None:
        """The source's schema, checked against the event-time column."""
        node = self.node
        schema = node.source.schema(ctx.source_ctx)
        if node.event_time is not None and schema is not None:
            if node.event_time not in schema:
                raise self.fail(
                    f"event_time column {node.event_time!r} is not in {node.source.describe()}.\n"
                    f"  columns there: {fmt_cols(schema)}{did_you_mean([node.event_time], schema)}"
                )
            try:
                event_time_expr(node.event_time, schema[node.event_time])
            except Exception as exc:
                raise self.fail(str(exc)) from None
        return schema

    def side_schemas(self, inputs: list[pl.Schema | None], ctx: StepContext) -> dict[str, pl.Schema | None]:
        return {"dead": DEAD_LETTER_SCHEMA}

    def check(self, ctx: StepContext) -> None:
        caps = self.node.source.caps()
        if ctx.mode == "batch" and not caps.bounded:
            raise self.fail(
                f"{self.node.source.describe()} never ends, so it cannot be read in batch mode.\n"
                "  hint: run with mode='stream' (and stop_after=/Ctrl-C to end it)"
            )

    def lower(self, inputs: list[pl.LazyFrame], ctx: StepContext) -> Outputs:
        node = self.node
        ctx.source_ctx.step = node.id
        ctx.source_ctx.event_time = node.event_time
        raw, parse_dead = node.source.read_all(ctx.source_ctx)
        parsed = parse_dead.lazy() if parse_dead is not None else pl.LazyFrame(schema=DEAD_LETTER_SCHEMA)
        n_parse_dead = 0 if parse_dead is None else parse_dead.height
        count = raw.select((pl.len() + n_parse_dead).alias("n"))
        known = getattr(node.source, "null_count", lambda _: None)(node.event_time)
        if node.event_time is None or known == 0:
            return Outputs(raw, {"dead": parsed, "count": count})
        t = pl.col(node.event_time)
        if node.source.fails_on_bad_records():
            first = raw.filter(t.is_null()).head(1).collect()
            if first.height:
                raise _no_time(node, first, "batch")
        untimed = _letters(node, raw.filter(t.is_null()), "batch")
        return Outputs(raw.filter(t.is_not_null()), {"dead": pl.concat([parsed, untimed]), "count": count})

    def build(self, ctx: StepContext, resume: bytes | None) -> Runtime:
        return ReadRuntime(self.node)

    # -- Spark ---------------------------------------------------------------------------
    def spark_form(self) -> str:
        return "read"

    def spark_read(self, spark: Any, columns: list[str]) -> Any:
        """The source as a Spark DataFrame of ``columns``, read by Spark itself: Parquet, CSV
        or JSON lines on local paths or S3 (``s3a://``). Refuses every other source."""
        from riverbed.connectors.files import FileSource

        src = self.node.source
        native = isinstance(src, FileSource) and not (src.watch or src.tail)
        files = src.files() if isinstance(src, FileSource) and native else []
        fmt = src.fmt(files[0]) if isinstance(src, FileSource) and files else None
        if not isinstance(src, FileSource) or fmt not in ("parquet", "csv", "jsonl"):
            raise self.fail(
                f"the Spark engine reads only what Spark reads itself (Parquet, CSV or JSON-lines "
                f"files, local or s3://), not {src.describe()}.\n  hint: export the input to "
                "Parquet first (riverbed can: read it and write rb.file_sink('in.parquet')), "
                "or run on the Polars engine (engine='polars')"
            )
        bad = [f for f in files if "://" in f and not f.startswith(("s3://", "s3a://", "file://"))]
        if bad:
            raise self.fail(f"Spark reads local paths and s3:// here, not {bad[0]!r}")
        paths = [("s3a://" + f[5:]) if f.startswith("s3://") else f for f in files]
        reader = spark.read.option("mode", "FAILFAST")
        if fmt == "parquet":
            df = reader.parquet(*paths)
        elif fmt == "csv":  # text, converted to the resolved types by Polars on the workers
            df = reader.options(header=True, sep=src.separator, inferSchema=False).csv(paths)
        else:
            df = reader.json(paths)
        return df.select(*[f"`{c}`" for c in columns])

    def spark_rows(self, df: pl.DataFrame) -> tuple[pl.DataFrame, int]:
        """Rows with an event time, and how many had none (dead letters, counted)."""
        et = self.node.event_time
        if et is None or not df.get_column(et).null_count():
            return df, 0
        if self.node.source.fails_on_bad_records():  # on_error="fail", as on the Polars engine
            raise _no_time(self.node, df.filter(pl.col(et).is_null()).head(1), "batch")
        kept = df.filter(pl.col(et).is_not_null())
        return kept, df.height - kept.height

    def needs(self, downstream: Cols, ctx: StepContext) -> Cols:
        return downstream


class ReadRuntime(Runtime):
    """Stream form: the executor's stamped rows in; rows without event time to ``dead``."""

    def __init__(self, node: ReadNode) -> None:
        self.node = node

    def process(self, inputs: list[Frame], tick: Tick) -> Outputs:
        rows, parse_dead = inputs[0], inputs[1]
        et = self.node.event_time
        sides: dict[str, Frame] = {"dead": parse_dead}
        dead = parse_dead.height if isinstance(parse_dead, pl.DataFrame) else 0
        if et is None or isinstance(rows, pl.LazyFrame):
            return Outputs(rows, sides, {"dead": dead})
        if not rows.width or not rows.get_column(et).null_count():
            return Outputs(rows, sides, {"dead": dead})
        t = event_time_expr(et, rows.schema[et])
        if self.node.source.fails_on_bad_records():
            raise _no_time(self.node, visible(rows.filter(t.is_null()).head(1)), "stream")
        letters = _letters(self.node, visible(rows.filter(t.is_null())).lazy(), "stream").collect()
        sides["dead"] = pl.concat([parse_dead.lazy(), letters.lazy()]).collect()
        return Outputs(rows.filter(t.is_not_null()), sides, {"dead": dead + letters.height})
