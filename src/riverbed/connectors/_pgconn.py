"""PostgreSQL connections for the connector: the lazy psycopg import, connecting, and
turning driver errors into riverbed's (an unreachable server is transient, the rest terminal)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote, urlsplit

from riverbed._errors import ConfigError, MissingExtraError, RiverbedError, TransientError

if TYPE_CHECKING:
    from psycopg import Connection


def psycopg_module() -> Any:
    try:
        import psycopg
    except ImportError:
        raise MissingExtraError("psycopg", "postgres") from None
    return psycopg


def psycopg_sql() -> Any:
    return psycopg_module().sql


def safe_url(url: str) -> str:
    """``url`` without its password or options, for plans, logs and error messages.

    Examples
    --------
    >>> safe_url("postgres://me:secret@db.local/shop?sslmode=require")
    'postgresql://me@db.local:5432/shop'
    """
    if url.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(url)
        try:
            port = parts.port or 5432
        except ValueError:
            port = 5432
        user = f"{unquote(parts.username)}@" if parts.username else ""
        return f"postgresql://{user}{parts.hostname or 'localhost'}:{port}{parts.path or '/'}"
    try:  # a key=value connection string
        params = psycopg_module().conninfo.conninfo_to_dict(url)
    except RiverbedError:
        raise
    except Exception:
        return "<a PostgreSQL connection string>"
    user = f"{params['user']}@" if params.get("user") else ""
    host = params.get("host") or "localhost"
    return f"postgresql://{user}{host}:{params.get('port') or 5432}/{params.get('dbname') or ''}"


def _address(url: str) -> str:
    parts = psycopg_module().conninfo.conninfo_to_dict(url)
    return f"{parts.get('host') or 'localhost'}:{parts.get('port') or '5432'}"


@contextmanager
def pg_errors(where: str, url: str, action: str, terminal: type[RiverbedError]) -> Iterator[None]:
    """Turn driver errors into riverbed's: unreachable server -> TransientError, else ``terminal``."""
    psycopg = psycopg_module()
    try:
        yield
    except RiverbedError:
        raise
    except psycopg.errors.InsufficientPrivilege as exc:
        raise terminal(
            f"{where}: permission denied while {action}: {_first_line(exc)}\n"
            "  hint: GRANT the role the privileges it needs (e.g. GRANT INSERT, UPDATE ON TABLE ... "
            "TO ...; GRANT CREATE ON SCHEMA ... TO ...)"
        ) from None
    except (psycopg.OperationalError, psycopg.errors.TransactionRollback) as exc:
        text = str(exc)
        if any(m in text for m in _LOGIN_REFUSED):  # the server answered: retrying will not help
            raise ConfigError(
                f"{where}: PostgreSQL at {_address(url)} refused the login: {_last_line(exc)}\n"
                "  hint: check the database name, the user and the password in the URL "
                "(postgresql://USER[:PASSWORD]@HOST:PORT/DB)"
            ) from None
        raise TransientError(
            f"{where}: PostgreSQL at {_address(url)} failed while {action}: {_first_line(exc)}\n"
            "  hint: is the server running and reachable? A commit cut off by a lost connection may "
            "or may not have happened: last_committed_epoch() tells after reconnecting"
        ) from exc
    except psycopg.Error as exc:
        raise terminal(f"{where}: {action} failed: {_first_line(exc)}") from exc


_LOGIN_REFUSED = (
    "does not exist",
    "password authentication failed",
    "no pg_hba.conf entry",
    "no password supplied",
)


def _last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def connect(url: str, connect_timeout: float, where: str, terminal: type[RiverbedError]) -> Connection[Any]:
    """An autocommit connection (transactions are explicit), errors mapped as :func:`_errors`."""
    psycopg = psycopg_module()
    params: dict[str, Any] = {}
    if "connect_timeout" not in psycopg.conninfo.conninfo_to_dict(url):
        params["connect_timeout"] = max(1, round(connect_timeout))
    with pg_errors(where, url, "connecting", terminal):
        con = psycopg.connect(url, autocommit=True, **params)
    return cast("Connection[Any]", con)
