"""The Spark engine's parts that need no Spark: layout, options, type mapping."""

from __future__ import annotations

import ast
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

import riverbed as rb
from riverbed._errors import PlanError
from riverbed.executors._spark_types import arrow_schema, ddl, to_riverbed, to_spark

SRC = Path(__file__).resolve().parents[1] / "src" / "riverbed"
BASE = {"Operator", "StepContext", "Resolved", "Runtime", "Tick", "Frame", "Outputs"}


def test_spark_executor_names_no_step_kind() -> None:
    """Like the other executors', the Spark driver knows forms, not step kinds: it names no
    node kind and no concrete operator (only the operator base and its context)."""
    for name in ("spark.py", "_spark_types.py"):
        tree = ast.parse((SRC / "executors" / name).read_text())
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
            a.attr for a in ast.walk(tree) if isinstance(a, ast.Attribute)
        }
        plan = ast.parse((SRC / "_plan.py").read_text())
        kinds = {c.name for c in ast.walk(plan) if isinstance(c, ast.ClassDef) and c.name.endswith("Node")}
        operators = {
            c.name
            for p in (SRC / "operators").glob("*.py")
            for c in ast.walk(ast.parse(p.read_text()))
            if isinstance(c, ast.ClassDef)
        }
        assert not (used & (kinds | operators)) - BASE, name


def _pipeline() -> rb.Pipeline:
    p = rb.Pipeline("opts")
    p.read(rb.testing.source([pl.DataFrame({"x": [1]})])).write(rb.testing.collect())
    return p


def test_engine_options_are_checked() -> None:
    with pytest.raises(PlanError, match="engine must be 'polars' or 'spark'"):
        _pipeline().run(engine="flink", progress=False)
    with pytest.raises(PlanError, match="batch mode only"):
        _pipeline().run(mode="stream", engine="spark")
    with pytest.raises(PlanError, match=r"no options \['max_wait'\]"):
        _pipeline().run(engine="spark", max_wait="1s")


def test_types_spark_refuses_are_widened_and_come_back() -> None:
    schema = pl.Schema(
        {
            "u8": pl.UInt8(),
            "u32": pl.UInt32(),
            "t": pl.Datetime("ms", "Europe/Paris"),
            "naive": pl.Datetime("ns"),
            "tags": pl.List(pl.String()),
            "s": pl.String(),
        }
    )
    df = pl.DataFrame(
        {
            "u8": [1, 255],
            "u32": [0, 4_000_000_000],
            "t": [0, 1_000],
            "naive": [5_000, 6_000],
            "tags": [["a"], []],
            "s": ["x", None],
        },
        schema_overrides={"t": pl.Int64, "naive": pl.Int64},
    ).with_columns(
        pl.col("t").cast(pl.Datetime("ms", "Europe/Paris")),
        pl.col("naive").cast(pl.Datetime("ns")),
        pl.col("u8").cast(pl.UInt8),
        pl.col("u32").cast(pl.UInt32),
    )
    target = arrow_schema(schema, "step x")
    assert target.field("u32").type == pa.int64() and target.field("tags").type == pa.list_(pa.string())
    assert target.field("t").type == pa.timestamp("us", "UTC") and target.field("s").type == pa.string()
    table = to_spark(df.select(reversed(df.columns)), schema, target)  # columns by position
    assert table.schema == target
    back = to_riverbed(table, schema)
    assert back.schema == schema
    assert back.equals(df.with_columns(pl.col("naive").dt.cast_time_unit("us").dt.cast_time_unit("ns")))
    assert ddl(schema, "x").startswith("`u8` short, `u32` long, `t` timestamp, `naive` timestamp_ntz")


def test_a_type_spark_has_not_is_refused_naming_the_step() -> None:
    with pytest.raises(PlanError, match=r"step 'w'.*Object"):
        ddl(pl.Schema({"o": pl.Object()}), "step 'w'")
