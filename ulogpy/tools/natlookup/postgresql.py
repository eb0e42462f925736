"""PostgreSQL history: ulogd's `ulog2_ct` table (pgsql-ulogd2.sql), through libpq.

`postgresql://user@host/db?table=NAME`: `table` is ours and is taken out
before the rest of the URI goes to libpq unchanged.  Without it the table is found
by its columns (`discover`).
"""

from __future__ import annotations

import time
import urllib.parse

from ulogpy.tools.natlookup import sql as sql_module
from ulogpy.tools.natlookup.discover import pg_tables, pick_table
from ulogpy.tools.natlookup.errors import LookupFailed
from ulogpy.tools.natlookup.flows import Flow, Query
from ulogpy.tools.natlookup.sql import (
    DEFAULT_TABLE,
    POSTGRESQL,
    check_table,
    index_note,
    lookup_sql,
    rows_to_flows,
    truncation_note,
)

SCHEMES = ("postgresql://", "postgres://")
CONNECT_TIMEOUT_S = 5


class PostgresSource:
    def __init__(self, conninfo: str, table: str | None = DEFAULT_TABLE, label: str = ""):
        """`table` None: found by its columns at the first lookup (`discover`)."""
        self.conninfo = conninfo
        self.table = check_table(table) if table is not None else None
        self._conn = None
        self.notes: list[str] = []
        self.label = label or conninfo

    @classmethod
    def from_uri(cls, text: str) -> PostgresSource:
        parts = urllib.parse.urlsplit(text)
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        tables = [v for k, v in query if k == "table"]
        rest = urllib.parse.urlencode([(k, v) for k, v in query if k != "table"], safe="/")
        conninfo = _unsplit(parts._replace(query=rest))
        return cls(conninfo, tables[-1] if tables else None, label=hide_password(text))

    def lookup(self, q: Query) -> list[Flow]:
        import psycopg

        conn = self._conn
        if conn is None or conn.closed:
            try:
                conn = psycopg.connect(self.conninfo, connect_timeout=CONNECT_TIMEOUT_S,
                                       autocommit=True)
            except (psycopg.Error, ValueError) as exc:
                raise LookupFailed(
                    f"{self.label}: cannot reach the database: {_first_line(exc)}") from None
            self._conn = conn  # kept open: a batch of lookups uses one connection
        try:
            if self.table is None:
                self.table = pick_table(pg_tables(conn), self.label)
            sql, params = lookup_sql(POSTGRESQL, self.table, q)
            began = time.monotonic()
            cur = conn.execute(sql, params)
            columns = [c.name for c in cur.description or ()]
            rows = cur.fetchall()
            if time.monotonic() - began > sql_module.SLOW_S:
                plan = [r[0] for r in conn.execute(POSTGRESQL.explain + sql, params)]
                self.notes.extend(index_note(POSTGRESQL, plan, self.label, self.table))
        except psycopg.errors.UndefinedTable:
            self.close()
            raise LookupFailed(f"{self.label}: no table {self.table!r} (load ulogd's "
                               "pgsql-ulogd2.sql, or give ?table=NAME)") from None
        except psycopg.OperationalError as exc:
            self.close()
            raise LookupFailed(f"{self.label}: the database went away: {_first_line(exc)}"
                               ) from None
        except psycopg.Error as exc:
            self.close()
            raise LookupFailed(f"{self.label}: query failed (is {self.table!r} ulogd's "
                               f"ulog2_ct layout?): {_first_line(exc)}") from None
        except BaseException:
            self.close()
            raise
        self.notes.extend(truncation_note(len(rows), self.label))
        return rows_to_flows(columns, rows, self.label)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def hide_password(uri: str) -> str:
    """The URI for messages and the `source` field: no password in it."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if not any(k == "password" for k, _ in pairs):
            return uri
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':', 1)[0]}@{host}"
    query = urllib.parse.urlencode([(k, v) for k, v in urllib.parse.parse_qsl(
        parts.query, keep_blank_values=True) if k != "password"], safe="/")
    return _unsplit(parts._replace(netloc=netloc, query=query))


def _unsplit(parts: urllib.parse.SplitResult) -> str:
    """urlunsplit() drops an empty host (`postgresql:///db` -> `postgresql:/db`); libpq
    needs the `//`."""
    text = f"{parts.scheme}://{parts.netloc}{parts.path}"
    return text + (f"?{parts.query}" if parts.query else "") + (
        f"#{parts.fragment}" if parts.fragment else "")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
