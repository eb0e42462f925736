"""PostgreSQL through psycopg 3: discovery as ulogd does it, batched writes.

What every SQL server's sink does is in `sqlsink.SqlSink`; here is PostgreSQL's
part.  Discovery checks the schema first and puts it on the search path.  A
batch is one transaction of the same statement per row, sent with
`executemany` (pipeline mode: one round trip per batch, calls stay in
order, as INSERT_OR_REPLACE_CT needs).  A batch that fails on a row's data
is retried row by row so only that row is rejected.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql

from ulogpy.core.keys import Key
from ulogpy.core.plugin import Unavailable
from ulogpy.db.pgstatement import Procedure, build_statement
from ulogpy.db.redact import Redactor
from ulogpy.db.render import pg_renderer
from ulogpy.db.sqlsink import SqlSink

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


def is_row_error(exc: psycopg.Error) -> bool:
    state = getattr(exc, "sqlstate", None)
    return bool(state) and state[:2] in ROW_ERROR_CLASSES and \
        not isinstance(exc, psycopg.OperationalError)


class PgSink(SqlSink):
    """A PostgreSQL table as a transport of the delivery model (written from a thread)."""

    driver_error = psycopg.Error
    renderer = staticmethod(pg_renderer)

    def __init__(self, *, label: str, conninfo: str, connect_timeout: int, schema: str,
                 table: str, procedure: Procedure, stack_keys: Sequence[Key],
                 redact: Redactor, first_is_id: bool = False) -> None:
        super().__init__(label=label, target=f"{schema}.{table}", table=table,
                         procedure=procedure, stack_keys=stack_keys, redact=redact,
                         first_is_id=first_is_id)
        self.conninfo = conninfo
        self.connect_timeout = connect_timeout
        self.schema = schema

    # -- connection -------------------------------------------------------------------
    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self.conninfo, autocommit=True,
                               connect_timeout=self.connect_timeout,
                               application_name="ulogpy")

    def _column_names(self, conn: psycopg.Connection) -> list[str]:
        cur = conn.cursor()
        cur.execute(SCHEMA_QUERY, (self.schema,))
        if cur.fetchone() is None:
            raise Unavailable(f"schema {self.schema} not found")
        if self.schema != "public":
            cur.execute(sql.SQL('SET search_path TO {}, "$user", public').format(
                sql.Identifier(self.schema)))
        cur.execute(COLUMNS_QUERY, (self.table, self.schema))
        return [row[0] for row in cur.fetchall()]

    def _statement(self, columns: list[str]) -> sql.Composed:
        return build_statement(self.procedure, self.schema, self.table, columns)

    def _statement_text(self, conn: psycopg.Connection) -> str:
        return self.statement.as_string(conn)

    def interrupt(self) -> None:
        conn = self.conn
        if conn is not None:
            try:
                conn.cancel_safe(timeout=2.0)
            except Exception:
                pass

    # -- writing ----------------------------------------------------------------------
    def write(self, records: list[dict]) -> int:
        rows = self._rows(records)
        conn = self.conn
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
                self._rejected(exc)
        return stored
