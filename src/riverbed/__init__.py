"""riverbed: data pipelines written once, run as batch, stream, Lambda or Kappa jobs.

Examples
--------
>>> import polars as pl, riverbed as rb
>>> p = rb.Pipeline("example")
>>> events = pl.DataFrame({"store": [1, 1, 2], "ts": [0, 30_000, 10_000], "amount": [5.0, 7.0, 1.0]})
>>> out = rb.testing.collect()
>>> _ = (p.read(rb.testing.source([events]), event_time="ts")
...       .window(rb.tumbling("1m"), by="store")
...       .agg(revenue=rb.sum("amount"), orders=rb.count())
...       .write(out))
>>> _ = p.run(mode="batch", progress=False)
>>> out.frame().sort("store").rows()
[(1, 0, 60000, 12.0, 2), (2, 0, 60000, 1.0, 1)]
"""

from riverbed import testing
from riverbed._errors import (
    ConfigError,
    MissingExtraError,
    PlanError,
    RecordError,
    RiverbedError,
    SinkError,
    SourceError,
    TransientError,
)
from riverbed._plan import Watermark
from riverbed.aggregates import (
    Agg,
    aggregate,
    count,
    count_distinct,
    first,
    last,
    max,
    mean,
    min,
    sum,
)
from riverbed.connectors._uri import resolve_sink as sink
from riverbed.connectors._uri import resolve_source as source
from riverbed.connectors.console import console
from riverbed.connectors.duckdb import duckdb, duckdb_table
from riverbed.connectors.files import files
from riverbed.connectors.files_sink import file_sink
from riverbed.connectors.kafka import kafka
from riverbed.connectors.log import log
from riverbed.connectors.postgres import postgres, postgres_table
from riverbed.connectors.sqlite import sqlite, sqlite_table
from riverbed.executors.result import RunResult
from riverbed.pipeline import Pipeline, Stream, Windowed, WindowedStream, watermark
from riverbed.windows import Session, Sliding, Tumbling, session, sliding, tumbling

__version__ = "0.1.0"

__all__ = [
    "Agg",
    "ConfigError",
    "MissingExtraError",
    "Pipeline",
    "PlanError",
    "RecordError",
    "RiverbedError",
    "RunResult",
    "Session",
    "SinkError",
    "Sliding",
    "SourceError",
    "Stream",
    "TransientError",
    "Tumbling",
    "Watermark",
    "Windowed",
    "WindowedStream",
    "__version__",
    "aggregate",
    "console",
    "count",
    "count_distinct",
    "duckdb",
    "duckdb_table",
    "file_sink",
    "files",
    "first",
    "kafka",
    "last",
    "log",
    "max",
    "mean",
    "min",
    "postgres",
    "postgres_table",
    "session",
    "sink",
    "sliding",
    "source",
    "sqlite",
    "sqlite_table",
    "sum",
    "testing",
    "tumbling",
    "watermark",
]
