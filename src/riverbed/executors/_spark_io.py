"""What the Spark engine writes, and how riverbed reaches Spark's workers."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import zipfile
from pathlib import Path
from typing import Any

import polars as pl

from riverbed._errors import RiverbedError, SinkError
from riverbed._plan import Plan, WriteNode
from riverbed.connectors.base import Sink, SinkContext

_FORMATS = {"parquet": "parquet", "csv": "csv", "jsonl": "json"}


def spark_writes(sink: Sink) -> bool:
    """Whether Spark writes ``sink`` itself: Parquet, CSV or JSON-lines files, a directory
    (local or ``s3://``, as ``s3a://``) or one local file."""
    from riverbed.connectors.files_sink import FileSink

    if not isinstance(sink, FileSink) or sink.fmt() not in _FORMATS:
        return False
    remote = "://" in sink.path
    if remote and not sink.path.startswith("s3://"):
        return False
    return sink.is_dir or not remote


def write_files(df: Any, sink: Any, step: str) -> None:
    """Write ``df`` with Spark's own writers (part files in parallel; one file through a
    staging directory)."""
    fmt = _FORMATS[sink.fmt()]
    path = ("s3a://" + sink.path[5:]) if sink.path.startswith("s3://") else sink.path
    try:
        if sink.is_dir:
            writer = df.write.mode("overwrite" if sink.mode == "replace" else "append").format(fmt)
            if sink.partition_by:
                writer = writer.partitionBy(*sink.partition_by)
            writer.options(**({"header": "true"} if fmt == "csv" else {})).save(path.rstrip("/"))
            return
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.parent / f".{target.name}.spark-{uuid.uuid4().hex[:8]}"
        try:
            df.coalesce(1).write.format(fmt).options(**({"header": "true"} if fmt == "csv" else {})).save(
                str(staging)
            )
            parts = sorted(p for p in staging.iterdir() if p.name.startswith("part-"))
            if len(parts) != 1:  # no rows: Spark may write no part file
                pl.DataFrame().write_parquet(target) if fmt == "parquet" else target.write_text("")
            else:
                os.replace(parts[0], target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except RiverbedError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise SinkError(
            f"step {step!r}: Spark cannot write {sink.describe()}: {type(exc).__name__}: {first}"
        ) from exc


def write_collected(plan: Plan, w: WriteNode, schema: pl.Schema, frame: pl.DataFrame, home: Path) -> None:
    """Write rows collected to the driver with riverbed's own sink."""
    ctx = SinkContext(mode="batch", home=home, pipeline=plan.name, step=w.id, schema=schema)
    try:
        writer = w.sink.open(ctx)
    except RiverbedError:
        raise
    except Exception as exc:
        raise SinkError(
            f"step {w.id!r}: cannot open {w.sink.describe()}: {type(exc).__name__}: {exc}"
        ) from exc
    try:
        writer.write(frame)
        writer.commit(0)
    except RiverbedError:
        raise
    except Exception as exc:
        raise SinkError(
            f"step {w.id!r}: cannot write to {w.sink.describe()}: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        writer.close()


def ship_riverbed(spark: Any, *, connect: bool) -> None:
    """Send riverbed's own code to the workers of a cluster (they still need polars and
    pyarrow installed)."""
    import riverbed

    root = Path(riverbed.__file__).parent
    target = Path(tempfile.mkdtemp(prefix="riverbed-spark-")) / "riverbed.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in root.rglob("*.py"):
            zf.write(f, Path("riverbed") / f.relative_to(root))
    if connect:
        spark.addArtifacts(str(target), pyfile=True)
    else:
        spark.sparkContext.addPyFile(str(target))
