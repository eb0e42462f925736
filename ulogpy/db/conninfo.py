"""A libpq connection string from ulogd's separate options (PGSQL, DBI with pgsql)."""

from __future__ import annotations

from ulogpy.core.plugin import PluginError


def pg_conninfo(*, host: str, port: int, db: str, user: str, password: str) -> str:
    """Only the options that are set, quoted by psycopg (loaded only when used)."""
    from psycopg.conninfo import make_conninfo

    params = {"host": host, "port": port or None, "dbname": db, "user": user,
              "password": password}
    try:
        return make_conninfo(**{k: v for k, v in params.items() if v})
    except Exception as exc:
        raise PluginError(f"bad connection parameters: {exc}") from None
