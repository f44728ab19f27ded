"""Files on S3 for real: riverbed reads and writes ``s3://`` URLs against moto's S3-compatible
server, started on 127.0.0.1 (a free port) by a fixture.

Two ways to point riverbed at the endpoint are tested: the standard AWS environment variables
(``AWS_ENDPOINT_URL`` ...) and fsspec ``storage_options``.

Without moto[server] and s3fs these tests skip locally, and fail under ``CI=true``.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import riverbed as rb

pytestmark = pytest.mark.integration

KEY, SECRET, REGION = "testing", "testing", "us-east-1"
DAY_MS = 86_400_000


def _require(module: str) -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"{module} is not installed: pip install -e '.[dev]'")


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server_mod = _require("moto.server")
    _require("s3fs")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point every AWS client (boto3, s3fs) at the moto server through the environment."""
    import s3fs

    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    s3fs.S3FileSystem.clear_instance_cache()  # a cached filesystem would keep an old endpoint
    return endpoint


@pytest.fixture
def bucket(aws_env: str) -> str:
    import boto3

    name = f"rb-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=aws_env, region_name=REGION).create_bucket(Bucket=name)
    return name


def client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=KEY, aws_secret_access_key=SECRET
    )


def put(endpoint: str, bucket: str, key: str, body: bytes) -> None:
    client(endpoint).put_object(Bucket=bucket, Key=key, Body=body)


def get(endpoint: str, bucket: str, key: str) -> bytes:
    return client(endpoint).get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[no-any-return]


def keys(endpoint: str, bucket: str, prefix: str = "") -> list[str]:
    listing = client(endpoint).list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def parquet_bytes(df: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.write_parquet(buf)
    return buf.getvalue()


SALES = pl.DataFrame(
    {
        "ts_ms": [0, 1_000, DAY_MS + 5, DAY_MS + 6, 2 * DAY_MS],
        "store_id": [1, 2, 1, 1, 2],
        "amount": [10.0, 5.0, 2.5, -1.0, 4.0],
    }
)
EXPECTED = [
    (1, 0, DAY_MS, 10.0, 1),
    (1, DAY_MS, 2 * DAY_MS, 1.5, 2),
    (2, 0, DAY_MS, 5.0, 1),
    (2, 2 * DAY_MS, 3 * DAY_MS, 4.0, 1),
]


def daily(source: Any, sink: Any) -> rb.Pipeline:
    p = rb.Pipeline("daily_revenue")
    p.read(source, event_time="ts_ms").window(rb.tumbling("1d"), by="store_id").agg(
        revenue=rb.sum("amount"), orders=rb.count()
    ).write(sink)
    return p


def test_read_glob_and_write_file_through_environment(bucket: str, aws_env: str, tmp_path: Path) -> None:
    put(aws_env, bucket, "sales/part-0.parquet", parquet_bytes(SALES.head(2)))
    put(aws_env, bucket, "sales/part-1.parquet", parquet_bytes(SALES.tail(3)))
    put(aws_env, bucket, "sales/_SUCCESS", b"")
    result = daily(rb.source(f"s3://{bucket}/sales/*.parquet"), rb.sink(f"s3://{bucket}/out/x.parquet")).run(
        progress=False, home=tmp_path
    )
    assert list(result.rows_read.values()) == [5]
    out = pl.read_parquet(io.BytesIO(get(aws_env, bucket, "out/x.parquet")))
    assert sorted(out.rows()) == EXPECTED
    # written under a temporary name and moved into place: nothing else is left behind
    assert keys(aws_env, bucket, "out/") == ["out/x.parquet"]


def test_storage_options_without_environment(
    endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import boto3
    import s3fs

    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    s3fs.S3FileSystem.clear_instance_cache()
    name = f"rb-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=KEY, aws_secret_access_key=SECRET
    ).create_bucket(Bucket=name)
    put(endpoint, name, "sales/a.parquet", parquet_bytes(SALES))
    options = {"client_kwargs": {"endpoint_url": endpoint}, "key": KEY, "secret": SECRET}
    src = rb.files(f"s3://{name}/sales/*.parquet", storage_options=options)
    sink = rb.file_sink(f"s3://{name}/out/x.parquet", storage_options=options)
    daily(src, sink).run(progress=False, home=tmp_path)
    out = pl.read_parquet(io.BytesIO(get(endpoint, name, "out/x.parquet")))
    assert sorted(out.rows()) == EXPECTED


def test_directory_and_partitioned_sinks(bucket: str, aws_env: str, tmp_path: Path) -> None:
    put(aws_env, bucket, "in/sales.parquet", parquet_bytes(SALES))
    p = rb.Pipeline("parts")
    s = p.read(f"s3://{bucket}/in/sales.parquet")
    s.write(f"s3://{bucket}/out/parts/")
    s.write(rb.file_sink(f"s3://{bucket}/out/by_store/", format="csv", partition_by="store_id"))
    p.run(progress=False, home=tmp_path)
    parts = keys(aws_env, bucket, "out/parts/")
    assert len(parts) == 1 and parts[0].endswith(".parquet")
    by_store = keys(aws_env, bucket, "out/by_store/")
    assert [k.split("/")[2] for k in by_store] == ["store_id=1", "store_id=2"]
    assert all(k.endswith(".csv") for k in by_store)
    back = rb.testing.collect()
    q = rb.Pipeline("back")
    q.read(f"s3://{bucket}/out/parts/").write(back)
    q.run(progress=False, home=tmp_path)
    assert back.frame().equals(SALES)


def test_csv_with_declared_schema_and_dead_letters(bucket: str, aws_env: str, tmp_path: Path) -> None:
    put(aws_env, bucket, "raw/a.csv", b"ts_ms,store_id,amount\n0,1,10\n5,1,ten\n9,2,2.5\n")
    p = rb.Pipeline("dead")
    out, dead = rb.testing.collect(), rb.testing.collect()
    s = p.read(
        rb.files(
            f"s3://{bucket}/raw/*.csv",
            schema={"ts_ms": pl.Int64, "store_id": pl.Int32, "amount": pl.Float64},
            on_error="dead_letter",
        )
    )
    s.write(out)
    s.dead_letters().write(dead)
    result = p.run(progress=False, home=tmp_path)
    assert out.frame()["amount"].to_list() == [10.0, 2.5]
    assert dead.frame().select("source", "position", "field", "raw").rows() == [
        (f"s3://{bucket}/raw/a.csv", "line 3", "amount", "5,1,ten")
    ]
    assert list(result.rows_read.values()) == [3]


def test_missing_object_lists_the_prefix(bucket: str, aws_env: str) -> None:
    put(aws_env, bucket, "sales/a.parquet", parquet_bytes(SALES))
    p = rb.Pipeline("missing")
    p.read(f"s3://{bucket}/sales/b.parquet").write(rb.testing.collect())
    with pytest.raises(rb.SourceError) as err:
        p.validate()
    assert f"s3://{bucket}/sales" in str(err.value) and "a.parquet" in str(err.value)


def test_checkpoints_on_s3_resume_and_lock(aws_env: str, bucket: str, tmp_path: Path) -> None:
    """A stream job checkpoints to s3://, resumes from there reading nothing twice, and a
    second job on the same checkpoint URL is refused while the first holds it."""
    from riverbed.eventlog import Log
    from riverbed.executors._checkpoint import CheckpointError, CheckpointStore

    home = tmp_path / "home"
    rows = pl.DataFrame({"id": list(range(40)), "ts": [i * 1000 for i in range(40)]})
    with Log(home) as log:
        log.create_topic("events", 1).append(rows.slice(0, 25))
    url = f"s3://{bucket}/jobs/copy"
    p = rb.Pipeline("copy")
    p.read(rb.log("events"), event_time="ts", name="events").write(
        rb.sqlite(str(tmp_path / "o.sqlite"), table="rows", mode="append"), name="out"
    )
    first = p.run("stream", home=home, checkpoint_dir=url, stop_at_end=True)
    assert first.rows_read["events"] == 25
    assert any(k.startswith("jobs/copy/checkpoints/") for k in keys(aws_env, bucket, "jobs/copy/"))
    with Log(home) as log:
        log.topic("events").append(rows.slice(25))
    second = p.run("stream", home=home, checkpoint_dir=url, stop_after="1500ms")
    assert second.rows_read["events"] == 15
    import sqlite3

    assert sqlite3.connect(tmp_path / "o.sqlite").execute("SELECT count(*) FROM rows").fetchone() == (40,)
    held = CheckpointStore(url)
    held.lock()
    try:
        with pytest.raises(CheckpointError, match="in use"):
            CheckpointStore(url).lock()
    finally:
        held.unlock()
