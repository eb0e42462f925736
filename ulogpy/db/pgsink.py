"""PostgreSQL through psycopg 3: discovery as ulogd does it, batched writes.

Discovery (spec 6.1) runs on every (re)connect, so a table changed while
ulogpy runs is picked up at the next reconnect (SIGHUP forces one).  A
batch is one transaction of the same statement per row, sent with
`executemany` (pipeline mode: one round trip per batch, calls stay in
order, as INSERT_OR_REPLACE_CT needs).  A batch that fails on a row's data
is retried row by row so only that row is rejected.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import psycopg
from psycopg import sql

from ulogpy.core.keys import Key
from ulogpy.core.plugin import Unavailable
from ulogpy.db.columns import ColumnError, map_columns
from ulogpy.db.pgstatement import Procedure, build_statement
from ulogpy.db.redact import Redactor
from ulogpy.db.render import pg_renderer, row_builder

log = logging.getLogger("ulogpy.db")

SCHEMA_QUERY = "SELECT nspname FROM pg_namespace n WHERE n.nspname = %s"
COLUMNS_QUERY = (
    "SELECT a.attname FROM pg_attribute a, pg_class c "
    "LEFT JOIN pg_namespace n ON c.relnamespace = n.oid "
    "WHERE c.relname = %s AND n.nspname = %s AND a.attnum > 0 AND a.attrelid = c.oid "
    "AND a.attisdropped = FALSE ORDER BY a.attnum"
)
#: SQLSTATE classes that mean "this row's data", not "the database": data exception,
#: integrity constraint violation, and errors raised by PL/pgSQL code for one call.
ROW_ERROR_CLASSES = ("22", "23", "P0")
LOGGED_REJECTS = 5


def is_row_error(exc: psycopg.Error) -> bool:
    state = getattr(exc, "sqlstate", None)
    return bool(state) and state[:2] in ROW_ERROR_CLASSES and \
        not isinstance(exc, psycopg.OperationalError)


class PgSink:
    """A PostgreSQL table as a transport of the delivery model (written from a thread)."""

    nonblocking = False

    def __init__(self, *, label: str, conninfo: str, connect_timeout: int, schema: str,
                 table: str, procedure: Procedure, stack_keys: Sequence[Key],
                 redact: Redactor, first_is_id: bool = False) -> None:
        self.label = label
        self.target = f"{schema}.{table}"
        self.conninfo = conninfo
        self.connect_timeout = connect_timeout
        self.schema = schema
        self.table = table
        self.procedure = procedure
        self.stack_keys = list(stack_keys)
        self.redact = redact
        self.first_is_id = first_is_id
        self.conn: psycopg.Connection | None = None
        self.statement: sql.Composed | None = None
        self.build = None
        self.rejected_logged = 0
        self.columns: list[str] = []

    # -- connection -------------------------------------------------------------------
    def open(self) -> None:
        self.close()
        try:
            conn = psycopg.connect(self.conninfo, autocommit=True,
                                   connect_timeout=self.connect_timeout,
                                   application_name="ulogpy")
        except psycopg.Error as exc:
            raise Unavailable("unable to connect to db: " + self.redact(exc)) from None
        except Exception as exc:  # malformed conninfo and the like
            raise Unavailable("unable to connect to db: " + self.redact(exc)) from None
        try:
            self._discover(conn)
        except (psycopg.Error, ColumnError) as exc:
            conn.close()
            raise Unavailable(self.redact(exc)) from None
        except Unavailable:
            conn.close()
            raise
        self.conn = conn

    def _discover(self, conn: psycopg.Connection) -> None:
        cur = conn.cursor()
        cur.execute(SCHEMA_QUERY, (self.schema,))
        if cur.fetchone() is None:
            raise Unavailable(f"schema {self.schema} not found")
        if self.schema != "public":
            cur.execute(sql.SQL('SET search_path TO {}, "$user", public').format(
                sql.Identifier(self.schema)))
        cur.execute(COLUMNS_QUERY, (self.table, self.schema))
        names = [row[0] for row in cur.fetchall()]
        if not names:
            raise Unavailable(f"table {self.schema}.{self.table} not found (or has no column)")
        active = map_columns(names, self.stack_keys, self.first_is_id)
        self.columns = [c.name for c in active]
        self.statement = build_statement(self.procedure, self.schema, self.table,
                                         self.columns)
        self.build = row_builder([(c.key, pg_renderer(c.type)) for c in active])
        log.debug("%s: %d columns in %s.%s, statement %s", self.label, len(names),
                  self.schema, self.table, self.statement.as_string(conn))

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # closing a dead connection must not fail the worker
                pass

    def interrupt(self) -> None:
        conn = self.conn
        if conn is not None:
            try:
                conn.cancel_safe(timeout=2.0)
            except Exception:
                pass

    # -- writing ----------------------------------------------------------------------
    def write(self, records: list[dict]) -> int:
        conn = self.conn
        if conn is None or self.build is None:
            raise Unavailable("not connected")
        build = self.build
        rows = [build(r) for r in records]
        try:
            with conn.transaction():
                conn.cursor().executemany(self.statement, rows)
            return len(rows)
        except psycopg.Error as exc:
            if not is_row_error(exc):
                raise Unavailable("execute failed: " + self.redact(exc)) from None
        return self._one_by_one(conn, rows)

    def _one_by_one(self, conn: psycopg.Connection, rows: list[tuple]) -> int:
        stored = 0
        cur = conn.cursor()
        for done, row in enumerate(rows):
            try:
                with conn.transaction():
                    cur.execute(self.statement, row)
                stored += 1
            except psycopg.Error as exc:
                if not is_row_error(exc):
                    raise Unavailable("execute failed: " + self.redact(exc), written=done) \
                        from None
                self.rejected_logged += 1
                if self.rejected_logged <= LOGGED_REJECTS:
                    log.error("%s: row rejected by the database: %s", self.label,
                              self.redact(exc).strip())
        return stored
