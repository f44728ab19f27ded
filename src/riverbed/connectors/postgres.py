"""PostgreSQL tables as a sink (replace, append, upsert by key) and tables or queries as a source.

Needs ``psycopg`` 3 (``pip install "riverbed[postgres]"``), imported only when a PostgreSQL
connector is used. Rows move with ``COPY ... (FORMAT csv)`` both ways: Polars writes and
parses the CSV text in native code, which is several times faster than fetching Python row
tuples (see ``benchmarks/postgres.py``).

A commit is one transaction: (drop and create the table) + COPY + (merge from a staging
table) + the epoch in ``_riverbed_epochs``, so a reader sees all of an epoch or none of it,
and a restarted job can ask :meth:`~riverbed.connectors.base.SinkWriter.last_committed_epoch`.
Identifiers are always quoted by ``psycopg.sql``; ``schema.table`` names a table in a schema.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import polars as pl

from riverbed._errors import (
    ConfigError,
    SinkError,
    SourceError,
)
from riverbed._faults import kill_point
from riverbed.connectors._pgconn import connect, pg_errors, psycopg_sql, safe_url
from riverbed.connectors._pgtypes import ColumnReader, accepts, pg_type, reader_for, to_copy_text
from riverbed.connectors._table import (
    EPOCHS_TABLE,
    TableMode,
    TableSink,
    TableSource,
    TableWriter,
    check_shape,
    table_options,
)
from riverbed.connectors.base import SinkContext, SinkWriter, SourceContext

if TYPE_CHECKING:
    from psycopg import Connection, sql

COPY_CHUNK_ROWS = 100_000  # rows turned into CSV text at a time while copying in


def _split_name(name: str) -> tuple[str, ...]:
    """``"schema.table"`` -> ("schema", "table"); ``"table"`` -> ("table",)."""
    schema, dot, table = name.partition(".")
    return (schema, table) if dot and schema and table else (name,)


@dataclass(frozen=True)
class PostgresSink(TableSink):
    """A PostgreSQL table. Build it with :func:`riverbed.postgres` or a ``postgresql://`` URI."""

    connect_timeout: float = 10.0

    def __repr__(self) -> str:  # never print a password
        return f"PostgresSink({self.describe()!r})"

    kind: ClassVar[str] = "postgres"

    def describe(self) -> str:
        return f"postgres {safe_url(self.path)}#{self.table or '<pipeline name>'} ({self.mode})"

    def open(self, ctx: SinkContext) -> SinkWriter:
        return _PostgresWriter(self, ctx)


class _PostgresWriter(TableWriter):
    """Holds one connection for the run; reconnects when it broke."""

    con: Connection[Any]

    def __init__(self, sink: PostgresSink, ctx: SinkContext) -> None:
        super().__init__(sink.table or ctx.pipeline, sink.mode, sink.key, ctx)  # "": the pipeline's name
        sql = psycopg_sql()
        self.sink = sink
        self.where = f"sink {sink.kind} table {self.table!r} ({safe_url(sink.path)})"
        parts = _split_name(self.table)
        self.schema_name = parts[0] if len(parts) == 2 else None
        self.ident = sql.Identifier(*parts)
        self.epochs = sql.Identifier(*parts[:-1], EPOCHS_TABLE)
        self.con = self._connect()
        self._check(ctx.schema)

    # -- connection -------------------------------------------------------------------
    def _connect(self) -> Connection[Any]:
        return connect(self.sink.path, self.sink.connect_timeout, self.where, SinkError)

    def _live(self) -> Connection[Any]:
        if self.con.closed or self.con.broken:
            self.con = self._connect()
        return self.con

    def _errors(self, action: str) -> Any:
        return pg_errors(self.where, self.sink.path, action, SinkError)

    def _regclass(self, ident: sql.Identifier) -> Any:
        row = self._live().execute("SELECT to_regclass(%s)::oid", [ident.as_string(self.con)]).fetchone()
        return row[0] if row else None

    # -- the check before the first commit ---------------------------------------------
    def _check(self, schema: pl.Schema | None) -> None:
        """Fail now, before any sink of the job commits, if this one cannot be written."""
        sql = psycopg_sql()
        con = self.con
        for name, dtype in (schema or {}).items():
            pg_type(dtype, name, self.where)  # every column has a PostgreSQL type
        with self._errors("checking the table"):
            if self.schema_name is not None:
                found = con.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [self.schema_name])
                if found.fetchone() is None:
                    con.execute(
                        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema_name))
                    )
            oid = self._regclass(self.ident)
            if oid is None or self.mode == "replace":
                self._need_create()
                if oid is not None:
                    self._need_owner(oid)
            else:
                self._check_existing(oid, schema)
            if self._regclass(self.epochs) is None:
                self._need_create()
                con.execute(
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {} (pipeline text NOT NULL, step text NOT NULL, "
                        "epoch bigint NOT NULL, PRIMARY KEY (pipeline, step))"
                    ).format(self.epochs)
                )
            else:
                self._need_privileges(self.epochs, ("SELECT", "INSERT", "UPDATE"))

    def _need_create(self) -> None:
        row = self.con.execute(
            "SELECT has_schema_privilege(coalesce(%s, current_schema()), 'CREATE')", [self.schema_name]
        ).fetchone()
        if not (row and row[0]):
            raise SinkError(
                f"{self.where}: the role may not create tables in schema "
                f"{self.schema_name or 'current_schema()'}.\n"
                "  hint: GRANT CREATE ON SCHEMA ... TO ..., or create the table beforehand "
                "and use mode='append'"
            )

    def _need_owner(self, oid: int) -> None:
        """``replace`` drops the table: only its owner (or a member of the owning role) may."""
        row = self.con.execute(
            "SELECT pg_has_role(relowner, 'USAGE'), relowner::regrole::text FROM pg_class WHERE oid = %s",
            [oid],
        ).fetchone()
        if row is not None and not row[0]:
            raise SinkError(
                f"{self.where}: mode='replace' drops and recreates the table, which only its owner "
                f"({row[1]}) may do.\n"
                "  hint: use mode='append' or 'upsert', or write as the owner"
            )

    def _need_privileges(self, ident: sql.Identifier, privileges: tuple[str, ...]) -> None:
        name = ident.as_string(self.con)
        missing = [
            p
            for p in privileges
            if self.con.execute("SELECT has_table_privilege(%s, %s)", [name, p]).fetchone() != (True,)
        ]
        if missing:
            raise SinkError(
                f"{self.where}: the role lacks {', '.join(missing)} on {name}.\n"
                f"  hint: GRANT {', '.join(missing)} ON TABLE {name} TO <the role in the URL>"
            )

    def _check_existing(self, oid: int, schema: pl.Schema | None) -> None:
        privileges = ("INSERT", "SELECT", "UPDATE", "DELETE") if self.upsert else ("INSERT",)
        self._need_privileges(self.ident, privileges)
        rows = self.con.execute(
            "SELECT attname, format_type(atttypid, atttypmod), t.typname FROM pg_attribute a "
            "JOIN pg_type t ON t.oid = a.atttypid WHERE attrelid = %s AND attnum > 0 "
            "AND NOT attisdropped ORDER BY attnum",
            [oid],
        ).fetchall()
        types = {r[0]: r[2] for r in rows}
        check_shape(
            self.where,
            {r[0]: r[1] for r in rows},
            schema,
            self.key if self.upsert else (),
            lambda column, dtype: accepts(types[column], dtype),
        )

    # -- commits ----------------------------------------------------------------------
    def _transaction(self, df: pl.DataFrame, *, replace: bool, epoch: int) -> None:
        sql = psycopg_sql()
        with self._errors(f"committing epoch {epoch}"):
            con = self._live()
            with con.transaction(), con.cursor() as cur:
                if replace:
                    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self.ident))
                created = self._create(cur, df)
                if self.upsert and not (replace or created):
                    self._merge(cur, df)
                else:
                    self._copy(cur, self.ident, df)
                self._epoch_in(cur, epoch)

    def _create(self, cur: Any, df: pl.DataFrame) -> bool:
        """Create the table for ``df`` if it does not exist; whether it was created."""
        sql = psycopg_sql()
        if self._regclass(self.ident) is not None:
            return False
        cols = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(pg_type(t, c, self.where)))
            for c, t in df.schema.items()
        )
        cur.execute(sql.SQL("CREATE TABLE {} ({})").format(self.ident, cols))
        if self.upsert and cur.connection.info.server_version >= 150000:
            # the key's unique index lets later commits merge with ON CONFLICT; null keys match
            keys = sql.SQL(", ").join(map(sql.Identifier, self.key))
            cur.execute(sql.SQL("CREATE UNIQUE INDEX ON {} ({}) NULLS NOT DISTINCT").format(self.ident, keys))
        return True

    def _copy(self, cur: Any, target: sql.Composable, df: pl.DataFrame) -> None:
        sql = psycopg_sql()
        cols = sql.SQL(", ").join(map(sql.Identifier, df.columns))
        stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(target, cols)
        text = to_copy_text(df)
        with cur.copy(stmt) as copy:
            for start in range(0, text.height, COPY_CHUNK_ROWS):
                buf = io.BytesIO()
                text.slice(start, COPY_CHUNK_ROWS).write_csv(buf, include_header=False)
                copy.write(buf.getvalue())
                kill_point("mid-copy")  # crash tests: the COPY is sent, not finished

    def _merge(self, cur: Any, df: pl.DataFrame) -> None:
        """Upsert ``df`` (one row per key) through a staging table."""
        sql = psycopg_sql()
        stage = sql.Identifier("__rb_stage")
        cur.execute(
            sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
                stage, self.ident
            )
        )
        self._copy(cur, stage, df)
        cols = sql.SQL(", ").join(map(sql.Identifier, df.columns))
        keys = sql.SQL(", ").join(map(sql.Identifier, self.key))
        if self._has_key_index(cur):
            others = [c for c in df.columns if c not in self.key]
            action = (
                sql.SQL("UPDATE SET {}").format(
                    sql.SQL(", ").join(
                        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in others
                    )
                )
                if others
                else sql.SQL("NOTHING")
            )
            cur.execute(
                sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) DO {}").format(
                    self.ident, cols, cols, stage, keys, action
                )
            )
            return
        # no unique index on exactly the key (a table made elsewhere): delete matches, insert
        same = sql.SQL(" AND ").join(
            sql.SQL("t.{0} IS NOT DISTINCT FROM s.{0}").format(sql.Identifier(k)) for k in self.key
        )
        cur.execute(
            sql.SQL("DELETE FROM {} AS t USING (SELECT DISTINCT {} FROM {}) AS s WHERE {}").format(
                self.ident, keys, stage, same
            )
        )
        cur.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(self.ident, cols, cols, stage))

    def _has_key_index(self, cur: Any) -> bool:
        """Whether a unique index covers exactly the key columns (and treats nulls as equal)."""
        nnd = "i.indnullsnotdistinct" if cur.connection.info.server_version >= 150000 else "false"
        found = cur.execute(
            (
                f"SELECT {nnd} FROM pg_index i WHERE i.indrelid = to_regclass(%s) AND i.indisunique "
                "AND i.indpred IS NULL AND i.indexprs IS NULL AND (SELECT array_agg(a.attname::text "
                "ORDER BY a.attname) FROM pg_attribute a WHERE a.attrelid = i.indrelid "
                "AND a.attnum = ANY(i.indkey)) = %s AND i.indnkeyatts = %s"
            ),
            [self.ident.as_string(cur), sorted(self.key), len(self.key)],
        ).fetchall()
        return any(row[0] for row in found)

    def _epoch_in(self, cur: Any, epoch: int) -> None:
        sql = psycopg_sql()
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (pipeline, step, epoch) VALUES (%s, %s, %s) "
                "ON CONFLICT (pipeline, step) DO UPDATE SET epoch = EXCLUDED.epoch"
            ).format(self.epochs),
            [self.ctx.pipeline, self.ctx.step, epoch],
        )

    def _record_epoch_only(self, epoch: int) -> None:
        with self._errors(f"committing epoch {epoch}"):
            con = self._live()
            with con.transaction(), con.cursor() as cur:
                self._epoch_in(cur, epoch)

    def last_committed_epoch(self) -> int | None:
        sql = psycopg_sql()
        with self._errors("reading the last committed epoch"):
            if self._regclass(self.epochs) is None:
                return None
            row = (
                self._live()
                .execute(
                    sql.SQL("SELECT epoch FROM {} WHERE pipeline = %s AND step = %s").format(self.epochs),
                    [self.ctx.pipeline, self.ctx.step],
                )
                .fetchone()
            )
        return int(row[0]) if row else None

    def close(self) -> None:
        self.con.close()


@dataclass(frozen=True)
class PostgresSource(TableSource):
    """A PostgreSQL table, or the result of a query, read whole as a bounded source."""

    query: str = ""
    connect_timeout: float = 10.0

    kind: ClassVar[str] = "postgres"

    def __repr__(self) -> str:  # never print a password
        return f"PostgresSource({self.describe()!r})"

    def describe(self) -> str:
        if self.query:
            text = " ".join(self.query.split())
            return f"postgres {safe_url(self.path)} query {text[:60] + ('...' if len(text) > 60 else '')!r}"
        return f"postgres {safe_url(self.path)}#{self.table}"

    @property
    def _where(self) -> str:
        return f"source {self.describe()}"

    def _from(self) -> Any:  # a psycopg.sql.Composable
        sql = psycopg_sql()
        if self.query:
            return sql.SQL("({}) AS q").format(sql.SQL(self.query.strip().rstrip(";")))
        return sql.Identifier(*_split_name(self.table))

    def _columns(self, con: Connection[Any]) -> list[tuple[str, ColumnReader]]:
        sql = psycopg_sql()
        if not self.query and con.execute(
            "SELECT to_regclass(%s)", [self._from().as_string(con)]
        ).fetchone() == (None,):
            listed = con.execute(
                "SELECT table_schema || '.' || table_name FROM information_schema.tables "
                "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1 LIMIT 50"
            ).fetchall()
            raise SourceError(
                f"{self._where}: no table {self.table!r}; the database has: "
                f"{', '.join(r[0] for r in listed) or '(none)'}"
            )
        cur = con.execute(sql.SQL("SELECT * FROM {} LIMIT 0").format(self._from()))
        desc = cur.description or []
        names = [d.name for d in desc]
        if len(set(names)) != len(names):
            raise SourceError(
                f"{self._where}: the query returns duplicate column names {names}.\n"
                "  hint: give each column its own name with AS"
            )
        types = dict(
            con.execute(
                "SELECT t.oid, (t.typname, e.typname) FROM pg_type t LEFT JOIN pg_type e "
                "ON e.oid = t.typelem AND t.typcategory = 'A' WHERE t.oid = ANY(%s)",
                [[d.type_code for d in desc]],
            ).fetchall()
        )
        out = []
        for d in desc:
            typname, elem = types[d.type_code]
            out.append((d.name, reader_for(typname, elem, d.precision, d.scale)))
        return out

    def schema(self, ctx: SourceContext) -> pl.Schema:
        with self._connection() as con, pg_errors(self._where, self.path, "reading the schema", SourceError):
            return pl.Schema({name: r.dtype for name, r in self._columns(con)})

    @contextmanager
    def _connection(self) -> Iterator[Connection[Any]]:
        con = connect(self.path, self.connect_timeout, self._where, SourceError)
        try:
            yield con
        finally:
            con.close()

    def _read(self, limit: int | None = None) -> pl.DataFrame:
        sql = psycopg_sql()
        with self._connection() as con, pg_errors(self._where, self.path, "reading", SourceError):
            cols = self._columns(con)
            exprs = sql.SQL(", ").join(
                sql.SQL("{} AS {}").format(sql.SQL(r.sql).format(sql.Identifier(n)), sql.Identifier(n))
                for n, r in cols
            )
            stmt = sql.SQL("COPY (SELECT {} FROM {}{}) TO STDOUT (FORMAT csv)").format(
                exprs, self._from(), sql.SQL(f" LIMIT {int(limit)}" if limit is not None else "")
            )
            buf = bytearray()
            with con.cursor() as cur, cur.copy(stmt) as copy:
                for chunk in copy:
                    buf += chunk
        schema = pl.Schema({n: r.dtype for n, r in cols})
        if not buf:
            return pl.DataFrame(schema=schema)
        raw = pl.read_csv(
            bytes(buf),
            has_header=False,
            schema=pl.Schema({n: r.csv for n, r in cols}),
        )
        return raw.select(r.finish(n) for n, r in cols)


@dataclass(frozen=True)
class PostgresTable:
    """A PostgreSQL table (or query): :meth:`as_source` reads it, :meth:`as_sink` writes it."""

    url: str
    table: str | None = None
    query: str | None = None
    mode: TableMode = "replace"
    key: tuple[str, ...] = ()
    connect_timeout: float = 10.0

    def __repr__(self) -> str:  # never print a password
        return f"PostgresTable({safe_url(self.url)!r}, table={self.table!r}, query={self.query!r})"

    def as_source(self) -> PostgresSource:
        return PostgresSource(self.url, self.table or "", self.query or "", self.connect_timeout)

    def as_sink(self) -> PostgresSink:
        if self.query:
            raise ConfigError(
                f"postgres {safe_url(self.url)}: a query is a source only; to write, name a table "
                "(rb.postgres(url, table=...))"
            )
        return PostgresSink(self.url, self.table or "", self.mode, self.key, self.connect_timeout)

    def describe(self) -> str:
        return self.as_source().describe() if self.query else self.as_sink().describe()


def _check_url(url: str) -> str:
    if not url.startswith(("postgresql://", "postgres://")) and "=" not in url:
        raise ConfigError(f"expected a PostgreSQL URL like postgresql://user@host:5432/dbname, got {url!r}")
    if "#" in url:
        raise ConfigError(f"{safe_url(url)}: pass the table as table=..., not after '#'")
    return url


def postgres(
    url: str,
    table: str | None = None,
    *,
    query: str | None = None,
    mode: TableMode = "replace",
    key: str | list[str] | None = None,
    connect_timeout: float = 10.0,
) -> PostgresTable:
    """A PostgreSQL table to write (``.write(...)``) or read (``p.read(...)``), or a query to read.

    Needs ``pip install "riverbed[postgres]"`` (psycopg 3).

    Parameters
    ----------
    url
        ``postgresql://[USER[:PASSWORD]@]HOST:PORT/DBNAME`` (or any libpq connection string).
    table
        ``name`` or ``schema.name``; the schema is created if missing. Writing with no table
        uses the pipeline's name.
    query
        Read the result of this SQL query instead of a table (sources only).
    mode
        Writing: ``"replace"`` (drop and recreate at the first commit; default), ``"append"``
        or ``"upsert"`` by ``key`` (``INSERT ... ON CONFLICT``; a table created by riverbed gets
        a unique index on the key).
    connect_timeout
        Seconds to wait for the server; an unreachable server raises ``TransientError``.

    Examples
    --------
    >>> import riverbed as rb
    >>> rb.postgres("postgresql://app@127.0.0.1:5432/shop", "daily_revenue").describe()
    'postgres postgresql://app@127.0.0.1:5432/shop#daily_revenue (replace)'
    >>> rb.postgres("postgresql://127.0.0.1/shop", query="SELECT * FROM stores").describe()
    "postgres postgresql://127.0.0.1:5432/shop query 'SELECT * FROM stores'"
    """
    _check_url(url)
    if table and query:
        raise ConfigError("rb.postgres(...): give table= or query=, not both")
    mode, keys = table_options("postgres", mode, key)
    return PostgresTable(url, table, query, mode, keys, connect_timeout)


def postgres_table(
    url: str, table: str | None = None, *, query: str | None = None, connect_timeout: float = 10.0
) -> PostgresSource:
    """Read a PostgreSQL table or query as a bounded source (e.g. a lookup table).

    Examples
    --------
    >>> import riverbed as rb
    >>> rb.postgres_table("postgresql://127.0.0.1:5432/shop", "public.stores").describe()
    'postgres postgresql://127.0.0.1:5432/shop#public.stores'
    """
    _check_url(url)
    if bool(table) == bool(query):
        raise ConfigError("rb.postgres_table(...): give exactly one of table= or query=")
    return PostgresSource(url, table or "", query or "", connect_timeout)
