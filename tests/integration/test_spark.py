"""The Spark engine: the same pipelines give the same rows on Polars and on Spark (local[2]).

Needs PySpark (``riverbed[spark]``) and a Java runtime: missing either fails under CI=true
and skips otherwise, with the reason.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import riverbed as rb
from riverbed._errors import PlanError
from riverbed._gen import generate

ROOT = Path(__file__).resolve().parents[2]


def _missing() -> str | None:
    if importlib.util.find_spec("pyspark") is None:
        return 'PySpark is not installed (pip install "riverbed[spark]")'
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "no Java runtime (java on PATH or JAVA_HOME) for Spark"
    return None


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """One local[2] SparkSession for the module."""
    why = _missing()
    if why is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    import warnings

    os.environ["PYSPARK_PYTHON"] = sys.executable
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # pyspark about pandas 3
        from pyspark.sql import SparkSession

        session = (
            SparkSession.builder.master("local[2]")
            .appName("riverbed-tests")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.default.parallelism", "2")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .getOrCreate()
        )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _sorted(df: pl.DataFrame) -> pl.DataFrame:
    return df.sort(df.columns, nulls_last=True)


def _same(polars_rows: pl.DataFrame, spark_rows: pl.DataFrame) -> None:
    assert_frame_equal(_sorted(polars_rows), _sorted(spark_rows), check_exact=False, rel_tol=1e-9)


def _both(build: Any, spark: Any) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Run ``build(sink)`` on Polars and on Spark; the rows each wrote."""
    got = []
    for engine in ("polars", "spark"):
        out = rb.testing.collect()
        kw = {"engine": "spark", "spark_session": spark} if engine == "spark" else {}
        with tempfile.TemporaryDirectory() as home:
            build(out).run(progress=False, home=home, **kw)
        got.append(out.frame())
    return got[0], got[1]


@pytest.fixture(scope="module")
def sales() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sales.parquet"
        generate(3000, 1).write_parquet(path, row_group_size=700)  # several Spark partitions
        yield path


def _example(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["daily_revenue", "minute_windows"])
def test_examples_write_the_same_files(spark: Any, sales: Path, tmp_path: Path, name: str) -> None:
    example = _example(name)
    outs = {}
    for engine, target in (("polars", "p.parquet"), ("spark", "s.parquet")):
        sink = str(tmp_path / target)
        kw = {"engine": "spark", "spark_session": spark} if engine == "spark" else {}
        result = example.pipeline(str(sales), sink).run(progress=False, home=tmp_path / engine, **kw)
        assert result.total_read == 3000
        outs[engine] = pl.read_parquet(sink)
        assert sum(result.rows_written.values()) == outs[engine].height
    assert outs["spark"].height > 0
    _same(outs["polars"], outs["spark"])


def test_directory_sink_is_written_by_spark(spark: Any, sales: Path, tmp_path: Path) -> None:
    target = tmp_path / "out"
    p = rb.Pipeline("dir")
    p.read(str(sales), event_time="ts_ms").filter(pl.col("amount") < 0).write(
        rb.file_sink(f"{target}/", format="parquet")
    )
    result = p.run(engine="spark", spark_session=spark, home=tmp_path / "h", progress=False)
    rows = pl.read_parquet(target / "*.parquet")
    expected = pl.read_parquet(sales).filter(pl.col("amount") < 0)
    assert rows.height == expected.height == result.rows_written[p.plan().writes()[0].id]
    _same(expected, rows)
    assert not result.notes  # nothing collected to the driver


def test_csv_and_json_sources_are_read_by_spark(spark: Any, sales: Path, tmp_path: Path) -> None:
    frame = pl.read_parquet(sales).head(500)
    frame.write_csv(tmp_path / "s.csv")
    frame.write_ndjson(tmp_path / "s.jsonl")
    for path in ("s.csv", "s.jsonl"):

        def build(out: Any, path: str = path) -> rb.Pipeline:
            p = rb.Pipeline("text")
            s = p.read(rb.files(str(tmp_path / path), schema=dict(frame.schema)), event_time="ts_ms")
            s.window(rb.tumbling("1m"), by="store_id").agg(n=rb.count(), s=rb.sum("amount")).write(out)
            return p

        polars_rows, spark_rows = _both(build, spark)
        _same(polars_rows, spark_rows)


def test_a_source_spark_cannot_read_is_refused(spark: Any) -> None:
    p = rb.Pipeline("mem")
    p.read(rb.testing.source([pl.DataFrame({"x": [1]})]), name="events").write(rb.testing.collect())
    with pytest.raises(PlanError) as err:
        p.run(engine="spark", spark_session=spark, progress=False)
    text = str(err.value)
    assert "'events'" in text and "Parquet" in text and "engine='polars'" in text


def test_spark_runs_batch_mode_only() -> None:
    p = rb.Pipeline("m")
    p.read(rb.testing.source([pl.DataFrame({"x": [1]})])).write(rb.testing.collect())
    with pytest.raises(PlanError, match="batch mode only"):
        p.run(mode="stream", engine="spark")


# -- generated pipelines -----------------------------------------------------------------------
wmean = rb.aggregate(
    partial={"sw": (pl.col("amount") * pl.col("qty")).sum(), "w": pl.col("qty").sum()},
    merge=lambda s: {"sw": s["sw"].sum(), "w": s["w"].sum()},
    finish=lambda s: s["sw"] / s["w"],
    name="wmean(amount, qty)",
)
spread = rb.aggregate(  # merges by max - min of partial states: riverbed's merge, not Spark's
    partial={"lo": pl.col("qty").min(), "hi": pl.col("qty").max(), "k": pl.len()},
    merge=lambda s: {"lo": s["lo"].min(), "hi": s["hi"].max(), "k": s["k"].sum() * 1},
    finish=lambda s: s["hi"] - s["lo"],
    name="spread(qty)",
)
AGGS = {
    "n": rb.count(),
    "n_amount": rb.count("amount"),
    "total": rb.sum("amount"),
    "lo": rb.min("amount"),
    "hi": rb.max("qty"),
    "avg": rb.mean("amount"),
    "first": rb.first("qty"),
    "last": rb.last("amount"),
    "distinct": rb.count_distinct("qty"),
    "wmean": wmean,
    "spread": spread,
}
rows = st.lists(
    st.tuples(
        st.integers(0, 600_000),
        st.sampled_from(["a", "b", "c", None]),
        st.one_of(st.none(), st.integers(-50, 100).map(lambda v: v / 4)),
        st.integers(0, 5),
    ),
    min_size=1,
    max_size=80,
)


@st.composite
def pipelines(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "rows": draw(rows),
        "window": draw(
            st.sampled_from(
                [rb.tumbling("1m"), rb.sliding("2m", every="30s"), rb.session("45s"), rb.tumbling("10m")]
            )
        ),
        "by": draw(st.sampled_from([["store"], []])),
        "aggs": draw(st.lists(st.sampled_from(sorted(AGGS)), min_size=1, max_size=5, unique=True)),
        "filter": draw(st.booleans()),
        "dedupe": draw(st.booleans()),
        "parts": draw(st.integers(1, 3)),
    }


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=pipelines())
def test_generated_pipelines_agree(spark: Any, case: dict[str, Any]) -> None:
    frame = pl.DataFrame(
        case["rows"],
        schema={"ts": pl.Int64, "store": pl.String, "amount": pl.Float64, "qty": pl.UInt8},
        orient="row",
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.parquet"
        frame.write_parquet(path, row_group_size=max(1, frame.height // case["parts"]))

        def build(out: Any) -> rb.Pipeline:
            p = rb.Pipeline("gen")
            s = p.read(str(path), event_time="ts")
            if case["filter"]:
                s = s.filter(pl.col("qty") != 3).with_columns(amount=pl.col("amount") * 2)
                s = s.select("ts", "store", "amount", "qty")
            if case["dedupe"]:
                s = s.dedupe("store", within="20s")
            aggs = {name: AGGS[name] for name in case["aggs"]}
            s.window(case["window"], by=case["by"]).agg(**aggs).write(out)
            return p

        polars_rows, spark_rows = _both(build, spark)
    assert polars_rows.schema == spark_rows.schema
    _same(polars_rows, spark_rows)


def test_cli_runs_on_spark(spark: Any, sales: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from riverbed.cli.app import app

    sink = tmp_path / "daily.parquet"
    args = ["run", str(ROOT / "examples" / "daily_revenue.py"), "--engine", "spark"]
    args += ["--spark-master", "local[2]", "--home", str(tmp_path / "h"), "--no-progress"]
    result = CliRunner().invoke(app, [*args, "-p", f"source={sales}", "-p", f"sink={sink}"])
    assert result.exit_code == 0, result.output
    assert "batch (spark)" in result.output and "3,000 rows read" in result.output
    assert pl.read_parquet(sink).height > 0
    stream = CliRunner().invoke(
        app, [*args, "--mode", "stream", "-p", f"source={sales}", "-p", f"sink={sink}"]
    )
    assert stream.exit_code == 1 and "batch mode only" in stream.output


def test_datetime_event_time_and_types_spark_lacks(spark: Any, tmp_path: Path) -> None:
    """ms timestamps with a time zone, unsigned ints and lists go through Spark and come back
    with riverbed's types."""
    frame = pl.DataFrame(
        {
            "ts": pl.Series([0, 1_500, 61_000, 61_000, 3_600_000], dtype=pl.Int64).cast(
                pl.Datetime("ms", "Europe/Paris")
            ),
            "user": pl.Series([1, 2, 1, 3, 2], dtype=pl.UInt32),
            "tags": [["a"], ["b", "c"], [], ["a"], None],
        }
    )
    path = tmp_path / "events.parquet"
    frame.write_parquet(path)

    def build(out: Any) -> rb.Pipeline:
        p = rb.Pipeline("types")
        s = p.read(str(path), event_time="ts").with_columns(n_tags=pl.col("tags").list.len())
        s.window(rb.tumbling("1m")).agg(users=rb.count_distinct("user"), last=rb.last("user")).write(out)
        return p

    polars_rows, spark_rows = _both(build, spark)
    assert spark_rows.schema == polars_rows.schema
    assert spark_rows.schema["window_start"] == pl.Datetime("ms", "Europe/Paris")
    _same(polars_rows, spark_rows)

    def passthrough(out: Any) -> rb.Pipeline:
        p = rb.Pipeline("rows")
        p.read(str(path), event_time="ts").filter(pl.col("user") > 1).write(out)
        return p

    polars_rows, spark_rows = _both(passthrough, spark)
    assert spark_rows.schema == polars_rows.schema == frame.schema
    _same(
        polars_rows.with_columns(pl.col("tags").list.join(",")),
        spark_rows.with_columns(pl.col("tags").list.join(",")),
    )


def test_union_of_two_reads_then_a_window(spark: Any, sales: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.parquet"
    pl.read_parquet(sales).head(400).with_columns(pl.col("store_id").cast(pl.Int64)).write_parquet(other)

    def build(out: Any) -> rb.Pipeline:
        p = rb.Pipeline("union")
        a = p.read(str(sales), event_time="ts_ms", name="a")
        b = p.read(str(other), event_time="ts_ms", name="b")
        a.union(b).window(rb.tumbling("1h"), by="store_id").agg(n=rb.count(), s=rb.sum("amount")).write(out)
        return p

    polars_rows, spark_rows = _both(build, spark)
    assert spark_rows["n"].sum() == 3400
    _same(polars_rows, spark_rows)


def test_rows_without_event_time_are_counted_and_dead_letter_steps_refused(
    spark: Any, tmp_path: Path
) -> None:
    path = tmp_path / "gaps.parquet"
    pl.DataFrame({"ts": [1_000, None, 2_000, None], "v": [1, 2, 3, 4]}).write_parquet(path)
    results = {}
    schema = {"ts": pl.Int64, "v": pl.Int64}
    for engine in ("polars", "spark"):
        out = rb.testing.collect()
        p = rb.Pipeline("gaps")
        src = rb.files(str(path), schema=schema, on_error="dead_letter")
        p.read(src, event_time="ts", name="in").write(out)
        kw = {"engine": "spark", "spark_session": spark} if engine == "spark" else {}
        results[engine] = (p.run(progress=False, home=tmp_path / engine, **kw), out.frame())
    (rp, fp), (rs, fs) = results["polars"], results["spark"]
    assert rs.dead_letters == rp.dead_letters == {"in": 2}
    assert rs.rows_read == rp.rows_read == {"in": 4}
    _same(fp, fs)
    for engine in ("polars", "spark"):  # under on_error="fail" (the default) both engines stop
        p = rb.Pipeline("strict")
        p.read(str(path), event_time="ts", name="in").write(rb.testing.collect())
        kw = {"engine": "spark", "spark_session": spark} if engine == "spark" else {}
        with pytest.raises(Exception, match=r"no event time|missing"):
            p.run(progress=False, home=tmp_path / f"strict-{engine}", **kw)
    p = rb.Pipeline("routed")
    s = p.read(str(path), event_time="ts", name="in")
    s.write(rb.testing.collect())
    s.dead_letters().write(rb.testing.collect())
    with pytest.raises(PlanError, match="dead letters are not a stream on the Spark engine"):
        p.run(engine="spark", spark_session=spark, progress=False, home=tmp_path / "r")
