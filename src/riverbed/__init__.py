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

# Names resolve on first use (PEP 562), so `import riverbed` and the CLI start fast: Polars,
# PyArrow, the embedded log, Kafka and the testing kit load only when something needs them.
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from riverbed import testing
    from riverbed._errors import (
        ConfigError,
        MissingExtraError,
        PlanError,
        RecordError,
        RiverbedError,
        SinkError,
        SinkUnavailable,
        SourceError,
        SourceUnavailable,
        Terminal,
        Transient,
        TransientError,
        UserFunctionError,
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
    from riverbed.pipeline import LateAware, Pipeline, Stream, Windowed, WindowedStream, watermark
    from riverbed.windows import Session, Sliding, Tumbling, session, sliding, tumbling

_LAZY: dict[str, tuple[str, str | None]] = {
    "testing": ("riverbed.testing", None),
    **{
        name: ("riverbed._errors", name)
        for name in (
            "ConfigError",
            "MissingExtraError",
            "PlanError",
            "RecordError",
            "RiverbedError",
            "SinkError",
            "SinkUnavailable",
            "SourceError",
            "SourceUnavailable",
            "Terminal",
            "Transient",
            "TransientError",
            "UserFunctionError",
        )
    },
    "Watermark": ("riverbed._plan", "Watermark"),
    **{
        name: ("riverbed.aggregates", name)
        for name in (
            "Agg",
            "aggregate",
            "count",
            "count_distinct",
            "first",
            "last",
            "max",
            "mean",
            "min",
            "sum",
        )
    },
    "sink": ("riverbed.connectors._uri", "resolve_sink"),
    "source": ("riverbed.connectors._uri", "resolve_source"),
    "console": ("riverbed.connectors.console", "console"),
    "duckdb": ("riverbed.connectors.duckdb", "duckdb"),
    "duckdb_table": ("riverbed.connectors.duckdb", "duckdb_table"),
    "files": ("riverbed.connectors.files", "files"),
    "file_sink": ("riverbed.connectors.files_sink", "file_sink"),
    "kafka": ("riverbed.connectors.kafka", "kafka"),
    "log": ("riverbed.connectors.log", "log"),
    "postgres": ("riverbed.connectors.postgres", "postgres"),
    "postgres_table": ("riverbed.connectors.postgres", "postgres_table"),
    "sqlite": ("riverbed.connectors.sqlite", "sqlite"),
    "sqlite_table": ("riverbed.connectors.sqlite", "sqlite_table"),
    "RunResult": ("riverbed.executors.result", "RunResult"),
    **{
        name: ("riverbed.pipeline", name)
        for name in ("LateAware", "Pipeline", "Stream", "Windowed", "WindowedStream", "watermark")
    },
    **{
        name: ("riverbed.windows", name)
        for name in ("Session", "Sliding", "Tumbling", "session", "sliding", "tumbling")
    },
}


def __getattr__(name: str) -> Any:
    """Import a public name on first use (and keep it: later lookups are plain attributes)."""
    import importlib

    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'riverbed' has no attribute {name!r}") from None
    value = importlib.import_module(module)
    if attr is not None:
        value = getattr(value, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__version__ = "0.1.0"

__all__ = [
    "Agg",
    "ConfigError",
    "LateAware",
    "MissingExtraError",
    "Pipeline",
    "PlanError",
    "RecordError",
    "RiverbedError",
    "RunResult",
    "Session",
    "SinkError",
    "SinkUnavailable",
    "Sliding",
    "SourceError",
    "SourceUnavailable",
    "Stream",
    "Terminal",
    "Transient",
    "TransientError",
    "Tumbling",
    "UserFunctionError",
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
