"""Fixtures for tests against a real PostgreSQL server.

- ``RIVERBED_PG_URL`` (default ``postgresql://127.0.0.1:5432/test``) names the server.
- Not reachable: the tests fail under ``CI=true`` and skip otherwise, with the reason.
- ``pg_schema`` gives each test its own schema (dropped afterwards) and a URL whose
  ``search_path`` is that schema, so unqualified table names land there.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

PG_URL = os.environ.get("RIVERBED_PG_URL", "postgresql://127.0.0.1:5432/test")


def _unavailable() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'riverbed[postgres]')"
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except Exception as exc:
        return f"no PostgreSQL at {PG_URL}: {str(exc).strip().splitlines()[0]}"
    return None


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The URL of a running PostgreSQL server (fails under CI=true when there is none)."""
    reason = _unavailable()
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return PG_URL


def pg_execute(url: str, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run one statement in autocommit mode; its rows (empty when it returns none)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as con:
        cur = con.execute(statement, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


@pytest.fixture
def pg_schema(postgres_url: str) -> Iterator[tuple[str, str]]:
    """``(url, schema)``: a fresh schema, and a URL whose search_path is that schema."""
    schema = f"rbtest_{uuid.uuid4().hex[:10]}"
    pg_execute(postgres_url, f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in postgres_url else "?"
    url = f"{postgres_url}{sep}options={quote(f'-csearch_path={schema}')}"
    try:
        yield url, schema
    finally:
        pg_execute(postgres_url, f'DROP SCHEMA "{schema}" CASCADE')
