"""What a SQL server's table does the same as a transport, whatever the server.

A sink connects, discovers the table's columns as ulogd does (spec 6.1) on
every (re)connect, so a table changed while ulogpy runs is picked up at the
next reconnect (SIGHUP forces one), builds the statement and row builder for
the active columns, and writes batches.  A failure to connect or to discover
is an outage (`Unavailable`): the writer keeps the rows and retries.  A row
the server refuses for its data is rejected, logged the first few times.

The servers differ in how they connect, list columns, quote a statement,
render values, tell a row's error from an outage, and undo a failed batch:
each subclass (`pgsink.PgSink`, `mysqlsink.MysqlSink`) says so explicitly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from ulogpy.core.keys import Key, KeyType
from ulogpy.core.plugin import Unavailable
from ulogpy.db.columns import ColumnError, map_columns
from ulogpy.db.procedure import Procedure
from ulogpy.db.redact import Redactor
from ulogpy.db.render import Render, row_builder

log = logging.getLogger("ulogpy.db")
#: Rejected rows logged one by one per sink (then they are only counted).
LOGGED_REJECTS = 5


class SqlSink:
    """Base of the SQL server sinks (written from a thread by the delivery model)."""

    nonblocking = False
    #: The driver's error base: a failure of discovery with it is an outage.
    driver_error: ClassVar[type[Exception]] = Exception
    #: The driver's value rendering for a key type (a staticmethod: `render.pg_renderer`).
    renderer: Callable[[KeyType], Render | None]

    def __init__(self, *, label: str, target: str, table: str, procedure: Procedure,
                 stack_keys: Sequence[Key], redact: Redactor,
                 first_is_id: bool = False) -> None:
        self.label = label
        self.target = target
        self.table = table
        self.procedure = procedure
        self.stack_keys = list(stack_keys)
        self.redact = redact
        self.first_is_id = first_is_id
        self.conn: Any = None
        self.statement: Any = None
        self.build: Callable[[dict], tuple] | None = None
        self.rejected_logged = 0
        self.columns: list[str] = []

    # -- what each server does its own way ----------------------------------------------
    def _connect(self) -> Any:
        raise NotImplementedError

    def _column_names(self, conn: Any) -> list[str]:
        """The table's (or view's) columns in order; [] if there is no such table."""
        raise NotImplementedError

    def _statement(self, columns: list[str]) -> Any:
        raise NotImplementedError

    def _statement_text(self, conn: Any) -> str:
        return str(self.statement)

    def interrupt(self) -> None:
        """Cut a call that waits for the server (at stop)."""

    def write(self, records: list[dict]) -> int:
        raise NotImplementedError

    # -- connection -----------------------------------------------------------------------
    def open(self) -> None:
        self.close()
        try:
            conn = self._connect()
        except Exception as exc:  # the driver's errors, a malformed conninfo and the like
            raise Unavailable("unable to connect to db: " + self.redact(exc)) from None
        try:
            self._discover(conn)
        except (self.driver_error, ColumnError) as exc:
            conn.close()
            raise Unavailable(self.redact(exc)) from None
        except Unavailable:
            conn.close()
            raise
        self.conn = conn

    def _discover(self, conn: Any) -> None:
        names = self._column_names(conn)
        if not names:
            raise Unavailable(f"table {self.target} not found (or has no column)")
        active = map_columns(names, self.stack_keys, self.first_is_id)
        self.columns = [c.name for c in active]
        self.statement = self._statement(self.columns)
        self.build = row_builder([(c.key, self.renderer(c.type)) for c in active])
        log.debug("%s: %d columns in %s, statement %s", self.label, len(names), self.target,
                  self._statement_text(conn))

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # closing a dead connection must not fail the worker
                pass

    # -- writing --------------------------------------------------------------------------
    def _rows(self, records: list[dict]) -> list[tuple]:
        """The records as rows of the active columns (an outage if not connected)."""
        build = self.build
        if self.conn is None or build is None:
            raise Unavailable("not connected")
        return [build(r) for r in records]

    def _rejected(self, exc: Exception) -> None:
        """A row the server refused for its data: the writer counts it, we log it."""
        self.rejected_logged += 1
        if self.rejected_logged <= LOGGED_REJECTS:
            log.error("%s: row rejected by the database: %s", self.label,
                      self.redact(exc).strip())
