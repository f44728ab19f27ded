"""PostgreSQL: riverbed's sink and source against plain psycopg on the same rows, same run.

Usage::

    python -m benchmarks.postgres [--rows 1000000] [--repeat 3] [--url postgresql://127.0.0.1:5432/test]

Writing (rows/s, best of ``--repeat``): riverbed's sink (one commit: table created, COPY in
CSV made by Polars, epoch recorded) against plain psycopg ``COPY ... FROM STDIN`` with
``write_row`` per row (binary), the usual way to bulk-load from Python. Reading: riverbed's
source (``COPY TO STDOUT`` parsed by Polars) against ``pl.read_database`` over a psycopg
connection. Tables go to a scratch schema dropped at the end; results are checked equal.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from datetime import datetime, timedelta

import polars as pl
import psycopg

from benchmarks._common import best_of, load_riverbed, print_table


def rows(n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": pl.int_range(n, eager=True),
            "store_id": pl.int_range(n, eager=True) % 500,
            "amount": pl.int_range(n, eager=True).cast(pl.Float64) / 7,
            "city": pl.Series(["Paris", "Lyon", "Nantes", "Lille"] * (n // 4 + 1))[:n],
            "ts": pl.datetime_range(
                datetime(2026, 1, 1), datetime(2026, 1, 1) + timedelta(seconds=n - 1), "1s", eager=True
            ),
        }
    )


def plain_copy(url: str, schema: str, df: pl.DataFrame) -> pl.DataFrame:
    """Plain psycopg: create the table, COPY every row with write_row (binary), commit."""
    with psycopg.connect(url) as con, con.cursor() as cur:
        cur.execute(f'DROP TABLE IF EXISTS "{schema}".plain')
        cur.execute(
            f'CREATE TABLE "{schema}".plain (id bigint, store_id bigint, amount double precision, '
            "city text, ts timestamp)"
        )
        with cur.copy(f'COPY "{schema}".plain FROM STDIN (FORMAT binary)') as copy:
            copy.set_types(["int8", "int8", "float8", "text", "timestamp"])
            for row in df.iter_rows():
                copy.write_row(row)
    return df


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--url", default="postgresql://127.0.0.1:5432/test")
    args = parser.parse_args(argv)
    rb, why = load_riverbed()
    if rb is None:
        print(f"riverbed not available: {why}", file=sys.stderr)
        return 2
    df = rows(args.rows)
    schema = f"rb_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.url, autocommit=True) as con:
        con.execute(f'CREATE SCHEMA "{schema}"')
    try:

        def riverbed_write() -> pl.DataFrame:
            p = rb.Pipeline("bench")
            p.read(rb.testing.source([df])).write(rb.postgres(args.url, f"{schema}.rb"))
            p.run(progress=False)
            return df

        def riverbed_read() -> pl.DataFrame:
            out = rb.testing.collect()
            p = rb.Pipeline("bench_read")
            p.read(rb.postgres(args.url, f"{schema}.rb")).write(out)
            p.run(progress=False)
            return out.frame()

        def read_database() -> pl.DataFrame:
            with psycopg.connect(args.url) as con:
                return pl.read_database(f'SELECT * FROM "{schema}".rb', con)

        w_rb, _ = best_of("riverbed sink (COPY csv)", riverbed_write, args.repeat)
        w_plain, _ = best_of("psycopg COPY write_row", lambda: plain_copy(args.url, schema, df), args.repeat)
        r_rb, got_rb = best_of("riverbed source (COPY TO STDOUT)", riverbed_read, args.repeat)
        r_db, got_db = best_of("pl.read_database (psycopg)", read_database, args.repeat)
    finally:
        with psycopg.connect(args.url, autocommit=True) as con:
            con.execute(f'DROP SCHEMA "{schema}" CASCADE')
    ok = got_rb.sort("id").equals(df) and got_db.sort("id").equals(df)
    n = args.rows
    print_table(
        ("", "best s", "rows/s", "vs plain"),
        [
            [w_rb.name, f"{w_rb.best:.3f}", f"{n / w_rb.best:,.0f}", f"{w_plain.best / w_rb.best:.2f}x"],
            [w_plain.name, f"{w_plain.best:.3f}", f"{n / w_plain.best:,.0f}", "1.00x"],
            [r_rb.name, f"{r_rb.best:.3f}", f"{n / r_rb.best:,.0f}", f"{r_db.best / r_rb.best:.2f}x"],
            [r_db.name, f"{r_db.best:.3f}", f"{n / r_db.best:,.0f}", "1.00x"],
        ],
    )
    print(f"{n:,} rows; results equal: {ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
