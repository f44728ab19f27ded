"""The Pipeline API: validation before anything runs, user functions, unions, several sinks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

import riverbed as rb
from riverbed._errors import UserFunctionError

SALES = pl.DataFrame(
    {
        "store_id": [1, 2, 1, 3],
        "ts": [0, 1_000, 61_000, 62_000],
        "amount": [10.0, -2.0, 5.0, 7.5],
        "note": ["a", "b", "c", "d"],
    }
)


def src(df: pl.DataFrame = SALES) -> rb.testing.ScriptedSource:
    return rb.testing.source([df])


def run(p: rb.Pipeline) -> rb.RunResult:
    return p.run(mode="batch", progress=False)


# -- validation ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "build",
    [
        lambda s: s.filter(pl.col("amout") > 0),
        lambda s: s.with_columns(x=pl.col("amout") * 2),
        lambda s: s.select("amout"),
        lambda s: s.window(rb.tumbling("1m"), by="amout").agg(n=rb.count()),
        lambda s: s.window(rb.tumbling("1m"), by="store_id").agg(n=rb.sum("amout")),
    ],
    ids=["filter", "with_columns", "select", "window-by", "agg"],
)
def test_unknown_column_names_it_and_lists_what_exists(build: Any) -> None:
    p = rb.Pipeline("bad")
    build(p.read(src(), event_time="ts")).write(rb.testing.collect())
    with pytest.raises(rb.PlanError) as err:
        run(p)
    msg = str(err.value)
    assert "amout" in msg
    for col in SALES.columns:
        assert col in msg
    assert "step '" in msg  # says which step


def test_validate_without_running(tmp_path: Path) -> None:
    p = rb.Pipeline("v")
    s = p.read(src(), event_time="ts")
    s.write(rb.sink(str(tmp_path / "raw.parquet")))  # a valid first sink ...
    s.select("nope").write(rb.sink(str(tmp_path / "bad.parquet")))  # ... and an invalid step
    with pytest.raises(rb.PlanError, match="nope"):
        p.validate()
    with pytest.raises(rb.PlanError, match="nope"):
        run(p)
    assert list(tmp_path.iterdir()) == []  # nothing was written before the error


def test_validate_returns_every_schema() -> None:
    p = rb.Pipeline("v")
    w = (
        p.read(src(), event_time="ts")
        .window(rb.tumbling("1m"), by="store_id")
        .agg(revenue=rb.sum("amount"), orders=rb.count(), avg=rb.mean("amount"))
    )
    w.write(rb.testing.collect())
    schemas = p.validate()
    assert schemas[w.node_id] == pl.Schema(
        {
            "store_id": pl.Int64,
            "window_start": pl.Int64,
            "window_end": pl.Int64,
            "revenue": pl.Float64,
            "orders": pl.Int64,
            "avg": pl.Float64,
        }
    )


def test_event_time_column_must_exist() -> None:
    p = rb.Pipeline("et")
    p.read(src(), event_time="time").write(rb.testing.collect())
    with pytest.raises(rb.PlanError, match="'time'") as err:
        run(p)
    assert "store_id" in str(err.value) and "ts" in str(err.value)


@pytest.mark.parametrize("column", ["note", "amount"])
def test_event_time_of_the_wrong_type(column: str) -> None:
    p = rb.Pipeline("et")
    p.read(src(), event_time=column).window(rb.tumbling("1m")).agg(n=rb.count()).write(rb.testing.collect())
    with pytest.raises(rb.PlanError) as err:
        run(p)
    msg = str(err.value)
    assert repr(column) in msg
    assert str(SALES.schema[column]) in msg
    assert "Datetime" in msg  # says what is expected


def test_window_needs_event_time() -> None:
    p = rb.Pipeline("w")
    p.read(src()).window(rb.tumbling("1m")).agg(n=rb.count()).write(rb.testing.collect())
    with pytest.raises(rb.PlanError, match="event_time"):
        run(p)


def test_missing_file_lists_the_directory(tmp_path: Path) -> None:
    (tmp_path / "sales-01.parquet").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    p = rb.Pipeline("m")
    p.read(str(tmp_path / "sales.parquet")).write(rb.testing.collect())
    with pytest.raises(rb.SourceError) as err:
        run(p)
    msg = str(err.value)
    assert "sales.parquet" in msg
    assert "sales-01.parquet" in msg and "notes.txt" in msg


def test_missing_directory_lists_the_nearest_parent(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    p = rb.Pipeline("m")
    p.read(str(tmp_path / "dta" / "*.csv")).write(rb.testing.collect())
    with pytest.raises(rb.SourceError) as err:
        p.validate()
    assert "dta" in str(err.value) and "data" in str(err.value)


def test_union_column_mismatch() -> None:
    p = rb.Pipeline("u")
    a = p.read(src())
    b = p.read(src(SALES.drop("note")))
    a.union(b).write(rb.testing.collect())
    with pytest.raises(rb.PlanError, match="union") as err:
        run(p)
    assert "note" in str(err.value)


def test_union_aligns_columns_by_name() -> None:
    p = rb.Pipeline("u")
    out = rb.testing.collect()
    a = p.read(src())
    b = p.read(src(SALES.select(reversed(SALES.columns))))
    a.union(b).write(out)
    run(p)
    assert out.frame().columns == SALES.columns
    assert out.frame().height == 2 * SALES.height


def test_union_of_different_pipelines_is_refused() -> None:
    a = rb.Pipeline("a").read(src())
    b = rb.Pipeline("b").read(src())
    with pytest.raises(rb.PlanError):
        a.union(b)


def test_agg_takes_aggregates_only() -> None:
    w = rb.Pipeline("a").read(src(), event_time="ts").window(rb.tumbling("1m"))
    with pytest.raises(rb.PlanError, match="aggregate"):
        w.agg(n=pl.len())  # type: ignore[arg-type]
    with pytest.raises(rb.PlanError):
        w.agg()


def test_bad_options() -> None:
    with pytest.raises(rb.PlanError):
        rb.tumbling("0s")
    with pytest.raises(rb.PlanError):
        rb.sliding("1m", every="2m")
    with pytest.raises(rb.PlanError):
        rb.session("soon")
    with pytest.raises(rb.PlanError):
        rb.Pipeline("no spaces")
    with pytest.raises(rb.PlanError):
        rb.Pipeline("x").read(src(), watermark=rb.watermark("1s"))  # no event_time
    p = rb.Pipeline("x")
    p.read(src()).write(rb.testing.collect())
    with pytest.raises(rb.PlanError):
        p.run(mode="both")  # type: ignore[arg-type]


def test_pipeline_that_writes_nowhere() -> None:
    p = rb.Pipeline("nowhere")
    p.read(src())
    with pytest.raises(rb.PlanError, match="writes nowhere"):
        run(p)


def test_explain_and_json() -> None:
    p = rb.Pipeline("plan")
    p.read(src(), event_time="ts").filter(pl.col("amount") > 0).window(rb.tumbling("1d"), by="store_id").agg(
        revenue=rb.sum("amount")
    ).write(rb.console())
    text = p.explain()
    assert "tumbling(1d)" in text and "sum(amount)" in text and "console" in text
    assert '"kind": "window"' in p.to_json()


# -- user functions ----------------------------------------------------------------------
def test_map_rows_transforms_and_drops() -> None:
    p = rb.Pipeline("mr")
    out = rb.testing.collect()

    def double_paid(row: dict[str, Any]) -> dict[str, Any] | None:
        if row["amount"] < 0:
            return None
        return {**row, "double": row["amount"] * 2}

    p.read(src()).map_rows(double_paid).select("store_id", "double").write(out)
    run(p)
    assert out.frame().rows() == [(1, 20.0), (1, 10.0), (3, 15.0)]


def test_map_rows_with_declared_schema_is_validated() -> None:
    p = rb.Pipeline("mr")
    s = p.read(src()).map_rows(lambda r: {"x": r["store_id"]}, schema={"x": pl.Int32})
    s.select("y").write(rb.testing.collect())
    with pytest.raises(rb.PlanError, match=r"unknown column.*'y'"):
        p.validate()


def test_map_rows_that_drops_every_row_keeps_the_input_columns() -> None:
    p = rb.Pipeline("mr")
    out = rb.testing.collect()
    w = p.read(src(), event_time="ts").map_rows(lambda r: None)
    w.window(rb.tumbling("1m"), by="store_id").agg(n=rb.count()).write(out)
    run(p)
    assert out.frame().height == 0
    assert out.frame().columns == ["store_id", "window_start", "window_end", "n"]


def test_map_rows_that_drops_the_event_time_is_named_at_run_time() -> None:
    p = rb.Pipeline("mr")
    w = p.read(src(), event_time="ts").map_rows(lambda r: {"a": 1})
    w.window(rb.tumbling("1m")).agg(n=rb.count()).write(rb.testing.collect())
    with pytest.raises(rb.PlanError, match="'ts'") as err:
        run(p)
    assert "a (Int64)" in str(err.value)


def test_map_rows_errors_name_the_function_and_row() -> None:
    def explode(row: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("boom")

    p = rb.Pipeline("mr")
    p.read(src()).map_rows(explode).write(rb.testing.collect())
    with pytest.raises(UserFunctionError) as err:
        run(p)
    msg = str(err.value)
    assert "explode" in msg and "test_api.py" in msg and "boom" in msg and "store_id" in msg

    p = rb.Pipeline("mr2")
    p.read(src()).map_rows(lambda r: [1]).write(rb.testing.collect())  # type: ignore[arg-type,return-value]
    with pytest.raises(UserFunctionError, match="dict or None"):
        run(p)


def test_map_batches() -> None:
    calls: list[int] = []

    def tax(df: pl.DataFrame) -> pl.DataFrame:
        calls.append(df.height)
        return df.with_columns(tax=pl.col("amount") * 0.2)

    p = rb.Pipeline("mb")
    out = rb.testing.collect()
    p.read(src(), event_time="ts").map_batches(tax).window(rb.tumbling("1m")).agg(tax=rb.sum("tax")).write(
        out
    )
    schemas = p.validate()
    assert any(s is not None and "tax" in s for s in schemas.values())  # found by probing
    run(p)
    assert out.frame()["tax"].to_list() == pytest.approx([1.6, 2.5])
    assert [c for c in calls if c] == [SALES.height]  # the real data passed once


def test_map_batches_errors() -> None:
    p = rb.Pipeline("mb")
    p.read(src()).map_batches(lambda df: None).write(rb.testing.collect())  # type: ignore[arg-type,return-value]
    with pytest.raises(UserFunctionError, match="must return a polars DataFrame"):
        run(p)

    def broken(df: pl.DataFrame) -> pl.DataFrame:
        if df.height:
            raise KeyError("nope")
        return df

    p = rb.Pipeline("mb2")
    p.read(src()).map_batches(broken).write(rb.testing.collect())
    with pytest.raises(UserFunctionError, match="broken"):
        run(p)


def test_map_batches_declared_schema_casts() -> None:
    p = rb.Pipeline("mb")
    out = rb.testing.collect()
    p.read(src()).map_batches(lambda df: df.select("store_id"), schema={"store_id": pl.Int32}).write(out)
    run(p)
    assert out.frame().schema == pl.Schema({"store_id": pl.Int32})


# -- several sinks ----------------------------------------------------------------------
def test_several_sinks_from_shared_steps(tmp_path: Path) -> None:
    p = rb.Pipeline("multi")
    paid = p.read(src(), event_time="ts").filter(pl.col("amount") > 0)
    mem = rb.testing.collect()
    windowed = (
        paid.window(rb.tumbling("1m"), by="store_id")
        .agg(revenue=rb.sum("amount"), orders=rb.count())
        .write(mem)
        .write(rb.sink(str(tmp_path / "w.parquet")))
    )
    refunds = rb.testing.collect()
    p.read(src()).filter(pl.col("amount") <= 0).write(refunds)
    assert isinstance(windowed, rb.Stream)
    result = run(p)
    assert len(result.rows_written) == 3
    assert sorted(mem.frame().rows()) == [
        (1, 0, 60_000, 10.0, 1),
        (1, 60_000, 120_000, 5.0, 1),
        (3, 60_000, 120_000, 7.5, 1),
    ]
    assert pl.read_parquet(tmp_path / "w.parquet").equals(mem.frame())
    assert refunds.frame()["amount"].to_list() == [-2.0]
    assert sorted(result.rows_read.values()) == [4, 4]


def test_run_result_summary() -> None:
    p = rb.Pipeline("summary")
    p.read(src()).write(rb.testing.collect())
    result = run(p)
    assert result.total_read == 4
    assert "4 rows read" in result.summary()
    assert "memory (collect)" in str(result)


def test_public_api_exports() -> None:
    for name in rb.__all__:
        assert hasattr(rb, name), name


def test_union_widens_types_and_refuses_text_merges() -> None:
    p = rb.Pipeline("u")
    out = rb.testing.collect()
    narrow = SALES.with_columns(pl.col("store_id").cast(pl.Int32), pl.col("amount").cast(pl.Float32))
    u = p.read(src(narrow)).union(p.read(src())).write(out)
    expected = p.validate()[u.node_id]
    assert expected == SALES.schema
    run(p)
    assert out.frame().schema == expected

    p = rb.Pipeline("u2")
    p.read(src()).union(p.read(src(SALES.with_columns(pl.col("ts").cast(pl.String))))).write(
        rb.testing.collect()
    )
    with pytest.raises(rb.PlanError, match="disagree on the type of 'ts'") as err:
        p.validate()
    assert "ts (Int64)" in str(err.value) and "ts (String)" in str(err.value)


@pytest.mark.parametrize("mode", ["batch", "stream"])
def test_events_without_an_event_time_are_dead_letters(mode: str, tmp_path: Path) -> None:
    df = SALES.with_columns(ts=pl.when(pl.col("store_id") == 2).then(None).otherwise(pl.col("ts")))
    p = rb.Pipeline("untimed")
    out, dead = rb.testing.collect(), rb.testing.collect()
    s = p.read(src(df), event_time="ts", name="read_1")
    s.window(rb.tumbling("1m")).agg(n=rb.count()).write(out)
    s.dead_letters().write(dead)
    result = p.run(mode=mode, progress=False, home=tmp_path)  # type: ignore[arg-type]
    assert out.frame().select("window_start", "n").sort("window_start").rows() == [(0, 1), (60_000, 2)]
    assert dead.frame()["field"].to_list() == ["ts"]
    assert "is null" in dead.frame()["error"][0] and '"store_id":2' in dead.frame()["raw"][0]
    assert result.rows_read == {"read_1": 4}
    assert result.dead_letters == {"read_1": 1}
