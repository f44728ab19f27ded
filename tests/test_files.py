"""Files as sources and sinks: CSV, JSON lines and Parquet; one file, a glob or a directory;
declared and inferred schemas; bad records (fail or dead letters); directory sinks."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import riverbed as rb

SALES = pl.DataFrame(
    {
        "id": [1, 2, 3, 4],
        "store_id": [10, 20, 10, 30],
        "ts": [0, 1_000, 2_000, 3_000],
        "amount": [1.5, 2.0, -3.25, 4.0],
        "note": ["a", "b,c", None, "d"],
    }
)
SCHEMA = {"id": pl.Int64, "ts": pl.Int64, "amount": pl.Float64}


def write(df: pl.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = path.suffix
    if fmt == ".parquet":
        df.write_parquet(path)
    elif fmt == ".csv":
        df.write_csv(path)
    else:
        df.write_ndjson(path)
    return path


def read(source: Any, home: Path | None = None) -> tuple[pl.DataFrame, rb.RunResult]:
    p = rb.Pipeline("read")
    out = rb.testing.collect()
    p.read(source).write(out)
    result = p.run(progress=False, home=home)
    return out.frame(), result


def read_with_dead(source: Any, home: Path | None = None) -> tuple[pl.DataFrame, pl.DataFrame, rb.RunResult]:
    p = rb.Pipeline("read")
    out, dead = rb.testing.collect(), rb.testing.collect()
    s = p.read(source)
    s.write(out)
    s.dead_letters().write(dead)
    result = p.run(progress=False, home=home)
    return out.frame(), dead.frame(), result


# -- sources -----------------------------------------------------------------------------
@pytest.mark.parametrize("ext", ["parquet", "csv", "jsonl"])
def test_one_file_each_format_inferred(tmp_path: Path, ext: str) -> None:
    path = write(SALES, tmp_path / f"sales.{ext}")
    df, result = read(str(path))
    assert df.equals(SALES)
    assert list(result.rows_read.values()) == [4]


@pytest.mark.parametrize("ext", ["parquet", "csv", "jsonl"])
def test_glob_and_directory_read_every_file_in_name_order(tmp_path: Path, ext: str) -> None:
    write(SALES.head(2), tmp_path / "d" / f"b.{ext}")
    write(SALES.tail(2), tmp_path / "d" / "sub" / f"c.{ext}")
    write(SALES.slice(1, 1), tmp_path / "d" / f"a.{ext}")
    (tmp_path / "d" / "_SUCCESS").write_text("")
    (tmp_path / "d" / f".hidden.{ext}").write_text("garbage")
    expected = pl.concat([SALES.slice(1, 1), SALES.head(2), SALES.tail(2)])
    by_dir, _ = read(str(tmp_path / "d"))
    assert by_dir.equals(expected)
    by_glob, _ = read(str(tmp_path / "d" / "**" / f"*.{ext}"))
    assert by_glob.equals(expected)
    one_level, _ = read(str(tmp_path / "d" / f"*.{ext}"))
    assert one_level.equals(pl.concat([SALES.slice(1, 1), SALES.head(2)]))


def test_directory_of_mixed_formats(tmp_path: Path) -> None:
    write(SALES, tmp_path / "d" / "a.parquet")
    write(SALES, tmp_path / "d" / "b.csv")
    with pytest.raises(rb.ConfigError, match="several formats") as err:
        read(str(tmp_path / "d"))
    assert "format=" in str(err.value)
    df, _ = read(rb.files(tmp_path / "d", format="parquet"))
    assert df.equals(SALES)


def test_explicit_format_for_an_odd_extension(tmp_path: Path) -> None:
    (tmp_path / "sales.txt").write_text(SALES.write_csv())
    with pytest.raises(rb.ConfigError, match="format"):
        read(str(tmp_path / "sales.txt"))
    df, _ = read(rb.files(tmp_path / "sales.txt", format="csv"))
    assert df.equals(SALES)


def test_gzip_text(tmp_path: Path) -> None:
    (tmp_path / "s.csv.gz").write_bytes(gzip.compress(SALES.write_csv().encode()))
    inferred, _ = read(str(tmp_path / "s.csv.gz"))
    assert inferred.equals(SALES)
    declared, _ = read(rb.files(tmp_path / "s.csv.gz", schema=SCHEMA))
    assert declared.equals(SALES.select(*SCHEMA))


@pytest.mark.parametrize("ext", ["parquet", "csv", "jsonl"])
def test_declared_schema_casts_and_projects(tmp_path: Path, ext: str) -> None:
    path = write(SALES, tmp_path / f"s.{ext}")
    schema = {"ts": pl.Datetime("ms"), "id": pl.Int32, "amount": pl.Float32}
    if ext != "parquet":
        schema["ts"] = pl.Int64  # text: epoch ms stays an integer
    df, _ = read(rb.files(path, schema=schema))
    assert df.schema == pl.Schema(schema)
    assert df["id"].to_list() == [1, 2, 3, 4]


def test_declared_schema_reads_parquet_files_of_different_types(tmp_path: Path) -> None:
    write(SALES.head(2).with_columns(pl.col("amount").cast(pl.Float32)), tmp_path / "a.parquet")
    write(SALES.tail(2).with_columns(pl.col("id").cast(pl.Int32)), tmp_path / "b.parquet")
    df, _ = read(rb.files(tmp_path / "*.parquet", schema={"id": pl.Int64, "amount": pl.Float64}))
    assert df["id"].to_list() == [1, 2, 3, 4]


def test_declared_schema_with_bare_and_incomplete_types(tmp_path: Path) -> None:
    path = write(SALES.with_columns(pl.from_epoch("ts", "ms")), tmp_path / "s.parquet")
    df, _ = read(rb.files(path, schema={"ts": pl.Datetime, "id": pl.Int64}))
    assert df.schema["ts"] == pl.Datetime("us")
    with pytest.raises(rb.ConfigError, match="'tags'"):
        rb.files(path, schema={"tags": pl.List})


@pytest.mark.parametrize("ext", ["parquet", "jsonl", "csv"])
def test_declared_temporal_types_parse_text(tmp_path: Path, ext: str) -> None:
    df = pl.DataFrame(
        {"ts": ["2026-01-01T10:00:00", "2026-01-01T10:00:30"], "day": ["2026-01-01", "2026-01-02"]}
    )
    path = write(df, tmp_path / f"s.{ext}")
    schema = {"ts": pl.Datetime("ms", "UTC"), "day": pl.Date}
    p = rb.Pipeline("t")
    out = rb.testing.collect()
    p.read(rb.files(path, schema=schema), event_time="ts").window(rb.tumbling("1m")).agg(
        n=rb.count(), day=rb.last("day")
    ).write(out)
    p.run(progress=False)
    assert out.frame().rows() == [
        (datetime(2026, 1, 1, 10, tzinfo=UTC), datetime(2026, 1, 1, 10, 1, tzinfo=UTC), 2, date(2026, 1, 2))
    ]


def test_declared_column_missing_from_a_parquet_file_names_it(tmp_path: Path) -> None:
    write(SALES, tmp_path / "a.parquet")
    write(SALES.drop("amount"), tmp_path / "b.parquet")
    with pytest.raises(rb.SourceError, match=r"b\.parquet") as err:
        read(rb.files(tmp_path / "*.parquet", schema=SCHEMA))
    assert "amount" in str(err.value)


def test_declared_column_missing_from_csv_header(tmp_path: Path) -> None:
    path = write(SALES.drop("amount"), tmp_path / "s.csv")
    with pytest.raises(rb.SourceError, match="amount") as err:
        read(rb.files(path, schema=SCHEMA))
    assert "store_id" in str(err.value)  # shows the header


def test_inferred_csv_types(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text("id,amount,when,flag\n1,2.5,2026-01-02,true\n2,3,2026-01-03,false\n")
    df, _ = read(str(tmp_path / "s.csv"))
    assert df.schema == pl.Schema(
        {"id": pl.Int64, "amount": pl.Float64, "when": pl.String, "flag": pl.Boolean}
    )


# -- bad records -----------------------------------------------------------------------
def test_on_error_fail_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("id,ts,amount\n1,0,1.5\n2,1000,abc\n3,oops,2\n")
    with pytest.raises(rb.RecordError) as err:
        read(rb.files(path, schema=SCHEMA))
    msg = str(err.value)
    assert str(path) in msg and "line 3" in msg and "'amount'" in msg and "'abc'" in msg
    assert err.value.source == str(path)
    assert err.value.position == "line 3"
    assert err.value.field == "amount"
    assert err.value.raw == "2,1000,abc"


def test_on_error_fail_jsonl_reports_the_first_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text('{"id": 1, "ts": 0}\n{"id": 2, "ts": "soon"}\nnot json\n')
    with pytest.raises(rb.RecordError) as err:
        read(rb.files(path, schema=SCHEMA))
    assert "line 2" in str(err.value) and "'ts'" in str(err.value) and str(path) in str(err.value)


def test_on_error_fail_ragged_csv_line(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("id,ts,amount\n1,0,1.5\n2,1000\n")
    with pytest.raises(rb.RecordError, match="line 3: expected 3 fields, got 2"):
        read(rb.files(path, schema=SCHEMA))


def test_dead_letters_keep_quoted_raw_text_and_true_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text(
        'id,ts,amount,note\n1,0,1.5,"two\nlines"\n\n2,x,2,"a,b"\n3,3,3,"say ""hi"""\n4,4,4,e,extra\n'
    )
    good, dead, result = read_with_dead(
        rb.files(path, schema={**SCHEMA, "note": pl.String}, on_error="dead_letter")
    )
    assert good.rows() == [(1, 0, 1.5, "two\nlines"), (3, 3, 3.0, 'say "hi"')]
    assert dead.select("position", "field", "raw").rows() == [
        ("line 5", "ts", '2,x,2,"a,b"'),
        ("line 7", None, "4,4,4,e,extra"),
    ]
    assert dead["error"].to_list() == ["cannot parse 'x' as Int64", "expected 4 fields, got 5"]
    assert list(result.rows_read.values()) == [4]
    assert list(result.dead_letters.values()) == [2]


GOOD = st.tuples(st.integers(-1000, 1000), st.integers(0, 10**6), st.floats(-1e6, 1e6, allow_nan=False))
BAD = st.sampled_from(["int", "float", "ragged", "json", "array"])
LINE_ST = st.one_of(
    GOOD.map(lambda g: ("good", g)),
    BAD.map(lambda b: ("bad", b)),
    st.just(("blank", None)),
)


def render(kind: str, value: Any, fmt: str) -> str:
    if kind == "blank":
        return ""
    if kind == "good":
        i, t, a = value
        return f"{i},{t},{a!r}" if fmt == "csv" else json.dumps({"id": i, "ts": t, "amount": a})
    bad = {
        "csv": {
            "int": "x1,5,1.0",
            "float": "1,5,1.0.0",
            "ragged": "1,5",
            "json": "1,5,1,9",
            "array": '1,5,"7',
        },
        "jsonl": {
            "int": '{"id": "x1", "ts": 5}',
            "float": '{"id": 1, "amount": "1.0.0"}',
            "ragged": '{"id": 1',
            "json": "not json",
            "array": "[1, 2]",
        },
    }
    return bad[fmt][value]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(LINE_ST, max_size=25))
def test_dead_letters_add_up(tmp_path: Path, fmt: str, lines: list[tuple[str, Any]]) -> None:
    header = ["id,ts,amount"] if fmt == "csv" else []
    text = "\n".join([*header, *(render(k, v, fmt) for k, v in lines)]) + "\n"
    path = tmp_path / f"s-{len(lines)}.{fmt}"
    path.write_text(text)
    good, dead, result = read_with_dead(rb.files(path, schema=SCHEMA, on_error="dead_letter"))
    offset = 1 + len(header)
    expected_good = [v for k, v in lines if k == "good"]
    expected_dead = [f"line {i + offset}" for i, (k, _) in enumerate(lines) if k == "bad"]
    records = sum(1 for k, _ in lines if k != "blank")
    assert good.height + dead.height == records
    assert sum(result.rows_read.values()) == records
    assert sum(result.dead_letters.values()) == dead.height
    assert good.rows() == [(i, t, pytest.approx(a)) for i, t, a in expected_good]
    assert dead["position"].to_list() == expected_dead
    assert set(dead["source"]) <= {str(path)}
    raw_lines = text.split("\n")
    for pos, raw in dead.select("position", "raw").rows():
        assert raw_lines[int(pos.split()[1]) - 1] == raw


def test_unclaimed_dead_letters_go_to_the_home_directory(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text('{"id": 1}\n{"id": "one"}\n')
    df, result = read(rb.files(path, schema=SCHEMA, on_error="dead_letter"), home=tmp_path / "home")
    assert df.height == 1
    (target,) = (tmp_path / "home" / "dead_letters" / "read").glob("read_*.jsonl")
    letters = pl.read_ndjson(target)
    assert letters["raw"].to_list() == ['{"id": "one"}']
    assert any(str(target) in n for n in result.notes)


# -- sinks -----------------------------------------------------------------------------
def run_to(sink: Any, df: pl.DataFrame = SALES) -> rb.RunResult:
    p = rb.Pipeline("sink")
    p.read(rb.testing.source([df])).write(sink)
    return p.run(progress=False)


def no_temp_files(root: Path) -> bool:
    return not [p for p in root.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]


@pytest.mark.parametrize("ext", ["parquet", "csv", "jsonl"])
def test_single_file_sink_roundtrip(tmp_path: Path, ext: str) -> None:
    target = tmp_path / "out" / f"sales.{ext}"
    run_to(str(target))
    df, _ = read(str(target))
    assert df.equals(SALES)
    assert no_temp_files(tmp_path)
    run_to(str(target), SALES.head(1))  # replace by default
    assert read(str(target))[0].height == 1
    run_to(rb.file_sink(target, mode="append"), SALES.tail(2))
    assert read(str(target))[0]["id"].to_list() == [1, 3, 4]


def test_directory_sink_part_files(tmp_path: Path) -> None:
    out = tmp_path / "parts"
    run_to(f"{out}/")
    parts = sorted(out.glob("part-*.parquet"))
    assert len(parts) == 1
    assert read(f"{out}/")[0].equals(SALES)
    run_to(rb.file_sink(out, format="parquet", mode="append"))
    assert len(list(out.glob("part-*"))) == 2
    run_to(f"{out}/")  # replace: the old parts go
    assert len(list(out.glob("part-*"))) == 1
    assert no_temp_files(tmp_path)
    with pytest.raises(rb.ConfigError, match="format"):
        rb.file_sink(out, partition_by="x")


def test_partitioned_directory_sink(tmp_path: Path) -> None:
    df = pl.DataFrame(
        {
            "day": ["2026-01-01", "2026-01-01", None, "a/b", "50% off"],
            "store_id": [1, 2, 1, 1, 2],
            "revenue": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    out = tmp_path / "by_day"
    run_to(rb.file_sink(out, format="parquet", partition_by=["day", "store_id"]), df)
    dirs = sorted(str(p.relative_to(out).parent) for p in out.rglob("part-*.parquet"))
    assert dirs == [
        "day=2026-01-01/store_id=1",
        "day=2026-01-01/store_id=2",
        "day=50%25%20off/store_id=2",
        "day=__HIVE_DEFAULT_PARTITION__/store_id=1",
        "day=a%2Fb/store_id=1",
    ]
    back = pl.read_parquet(out, hive_partitioning=True).select(df.columns).sort("revenue")
    assert back.cast({"store_id": pl.Int64}).equals(df)
    assert no_temp_files(tmp_path)


def test_csv_partitioned_sink_reads_back(tmp_path: Path) -> None:
    out = tmp_path / "csv"
    run_to(rb.file_sink(out, format="csv", partition_by="store_id"))
    ten = read(str(out / "store_id=10"))[0]
    assert ten["id"].to_list() == [1, 3]
    assert "store_id" not in ten.columns


def test_failed_write_leaves_no_file(tmp_path: Path) -> None:
    p = rb.Pipeline("obj")
    target = tmp_path / "x.parquet"
    p.read(rb.testing.source([SALES])).map_batches(
        lambda d: pl.DataFrame({"o": [object()]}, schema={"o": pl.Object})
    ).write(str(target))
    with pytest.raises(rb.SinkError, match=r"x\.parquet"):
        p.run(progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("declared", [False, True])
def test_progress_display_reads_the_same_rows(tmp_path: Path, declared: bool) -> None:
    for i in range(3):
        write(SALES.with_columns(id=pl.col("id") + 10 * i), tmp_path / f"s{i}.parquet")
    source = rb.files(tmp_path / "*.parquet", schema=SCHEMA if declared else None)
    results = []
    for progress in (False, True):
        p = rb.Pipeline("progress")
        out = rb.testing.collect()
        p.read(source, event_time="ts").filter(pl.col("amount") > 0).select("id", "ts").write(out)
        result = p.run(progress=progress)
        results.append((out.frame().sort("id").rows(), result.rows_read))
    assert results[0] == results[1]
    assert list(results[0][1].values()) == [12]
