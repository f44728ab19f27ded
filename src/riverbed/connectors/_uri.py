"""Sources and sinks named by URI strings.

* a path, glob or directory: files (format from the extension); any fsspec URL (``s3://``...)
* ``FILE.duckdb#TABLE`` / ``FILE.sqlite#TABLE`` (``.db``, ``.sqlite3`` too)
* ``postgresql://[USER@]HOST:PORT/DB#TABLE`` (``postgres://`` too; ``#SCHEMA.TABLE``)
* ``console`` / ``-`` (sinks)
* ``log:TOPIC`` (the embedded log), ``kafka://HOST:PORT/TOPIC``
"""

from __future__ import annotations

from typing import Any

from riverbed._errors import ConfigError
from riverbed.connectors.base import Sink, Source

_DUCK = (".duckdb", ".ddb")
_SQLITE = (".sqlite", ".sqlite3", ".db")
_PG = ("postgresql://", "postgres://")


def _split_table(uri: str, default_table: str | None) -> tuple[str, str | None]:
    path, _, table = uri.partition("#")
    return path, (table or default_table)


def resolve_source(uri: str, **options: Any) -> Source:
    """Turn a URI string into a source connector.

    Examples
    --------
    >>> resolve_source("data/sales/*.parquet").describe()
    'files data/sales/*.parquet'
    """
    if not isinstance(uri, str) or not uri:
        raise ConfigError(f"a source URI must be a non-empty string, got {uri!r}")
    if uri.startswith("log:"):
        from riverbed.connectors.log import log

        return log(uri[4:], **options).as_source()
    if uri.startswith("kafka://"):
        from riverbed.connectors.kafka import from_uri

        return from_uri(uri, **options).as_source()
    path, table = _split_table(uri, None)
    if uri.startswith(_PG):
        from riverbed.connectors.postgres import postgres_table

        if not table:
            raise ConfigError(f"{uri!r}: name the table, e.g. {path}#my_table or {path}#my_schema.my_table")
        return postgres_table(path, table, **options)
    if path.lower().endswith(_DUCK):
        from riverbed.connectors.duckdb import duckdb_table

        if not table:
            raise ConfigError(f"{uri!r}: name the table, e.g. {path}#my_table")
        return duckdb_table(path, table)
    if path.lower().endswith(_SQLITE):
        from riverbed.connectors.sqlite import sqlite_table

        if not table:
            raise ConfigError(f"{uri!r}: name the table, e.g. {path}#my_table")
        return sqlite_table(path, table)
    from riverbed.connectors.files import files

    return files(uri, **options)


def resolve_sink(uri: str, *, pipeline: str | None = None, **options: Any) -> Sink:
    """Turn a URI string into a sink connector.

    A ``.duckdb``/``.sqlite`` path without ``#TABLE`` uses the pipeline's name as the table
    (``pipeline``, or the name of the pipeline that runs the sink).
    A path ending with ``/`` gets part files.

    Examples
    --------
    >>> resolve_sink("out/warehouse.duckdb#daily").describe()
    'duckdb out/warehouse.duckdb#daily (replace)'
    >>> resolve_sink("out/report/").describe()
    'parquet directory out/report/'
    """
    if not isinstance(uri, str) or not uri:
        raise ConfigError(f"a sink URI must be a non-empty string, got {uri!r}")
    if uri in ("console", "-", "stdout"):
        from riverbed.connectors.console import console

        return console(**options)
    if uri.startswith("log:"):
        from riverbed.connectors.log import log

        return log(uri[4:], **options).as_sink()
    if uri.startswith("kafka://"):
        from riverbed.connectors.kafka import from_uri

        return from_uri(uri, **options).as_sink()
    path, table = _split_table(uri, pipeline)
    if uri.startswith(_PG):
        from riverbed.connectors.postgres import postgres

        return postgres(path, table or "", **options).as_sink()  # "": the pipeline's name
    if path.lower().endswith(_DUCK + _SQLITE):
        table = table or ""  # "": the name of the pipeline that writes there, known at run time
        if path.lower().endswith(_DUCK):
            from riverbed.connectors.duckdb import duckdb

            return duckdb(path, table, **options)
        from riverbed.connectors.sqlite import sqlite

        return sqlite(path, table, **options)
    from riverbed.connectors.files_sink import file_sink

    name = uri.rstrip("/").rsplit("/", 1)[-1]
    if "." not in name and not uri.endswith("/") and options.get("format") is None:
        import difflib

        close = difflib.get_close_matches(uri.lower(), ["console", "stdout"], n=1, cutoff=0.6)
        if close:
            raise ConfigError(
                f"unknown sink {uri!r}: did you mean {close[0]!r}?\n"
                "  hint: a file sink needs an extension (.parquet, .csv, .jsonl) or a trailing / "
                "for a directory"
            )
    fmt = options.pop("format", None)
    if uri.endswith("/") and fmt is None:
        fmt = "parquet"
    return file_sink(uri, format=fmt, **options)
