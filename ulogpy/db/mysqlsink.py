"""MySQL / MariaDB through PyMySQL: discovery as ulogd does it, batched writes.

Discovery (spec 6.1, as ulogd's MYSQL lists a table's fields) runs on every
(re)connect: the table's (or view's) columns in order, mapped onto keys by
`columns.map_columns`.  A batch is one transaction: a multi-row INSERT for
INSERT procedures, else one call per row in order (INSERT_OR_REPLACE_CT needs
the order).  InnoDB undoes only the statement that failed, so a row refused
for its data is counted as rejected and the rest of the batch still commits;
losing the server undoes the whole batch, which the writer keeps and retries.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pymysql
from pymysql.constants import CLIENT

from ulogpy.core.keys import Key
from ulogpy.core.plugin import Unavailable
from ulogpy.db.columns import ColumnError, map_columns
from ulogpy.db.mystatement import build_statement
from ulogpy.db.pgstatement import Procedure
from ulogpy.db.redact import Redactor
from ulogpy.db.render import my_renderer, row_builder

log = logging.getLogger("ulogpy.db")

COLUMNS_QUERY = ("SELECT column_name FROM information_schema.columns WHERE "
                 "table_schema = DATABASE() AND table_name = %s ORDER BY ordinal_position")
#: Server error codes that concern one row's data (out of range, too long, bad value,
#: NULL in NOT NULL, duplicate key, foreign key, SIGNAL from a procedure).
ROW_ERROR_CODES = frozenset({1048, 1062, 1216, 1217, 1264, 1265, 1292, 1366, 1406, 1411,
                             1451, 1452, 1644, 1690, 3819})
LOGGED_REJECTS = 5
READ_TIMEOUT_S = 60


def is_row_error(exc: pymysql.Error) -> bool:
    if isinstance(exc, pymysql.OperationalError) and exc.args and exc.args[0] >= 2000:
        return False  # client-side: the connection is gone
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    return code in ROW_ERROR_CODES or isinstance(exc, pymysql.DataError | pymysql.IntegrityError)


def connect_args(*, host: str, port: int, user: str, password: str, db: str,
                 socket: str, connect_timeout: int) -> dict:
    """PyMySQL's arguments for ulogd's options: like libmysqlclient, an empty host or
    `localhost` means the unix socket (`socket`), any other host TCP."""
    args = {"user": user, "password": password, "database": db,
            "connect_timeout": connect_timeout, "read_timeout": READ_TIMEOUT_S,
            "write_timeout": READ_TIMEOUT_S, "autocommit": False, "charset": "utf8mb4",
            "client_flag": CLIENT.FOUND_ROWS}
    if host in ("", "localhost") or host.startswith("/"):
        args["unix_socket"] = host if host.startswith("/") else socket
    else:
        args["host"] = host
        args["port"] = port or 3306
    return args


class MysqlSink:
    """A MySQL table as a transport of the delivery model (written from a thread)."""

    nonblocking = False

    def __init__(self, *, label: str, connect: dict, table: str, procedure: Procedure,
                 stack_keys: Sequence[Key], redact: Redactor,
                 first_is_id: bool = False) -> None:
        self.label = label
        self.target = f"{connect.get('database')}.{table}"
        self.connect = connect
        self.table = table
        self.procedure = procedure
        self.stack_keys = list(stack_keys)
        self.redact = redact
        self.first_is_id = first_is_id
        self.conn: pymysql.connections.Connection | None = None
        self.statement = ""
        self.build = None
        self.rejected_logged = 0
        self.columns: list[str] = []

    # -- connection -------------------------------------------------------------------
    def open(self) -> None:
        self.close()
        try:
            conn = pymysql.connect(**self.connect)
        except Exception as exc:
            raise Unavailable("unable to connect to db: " + self.redact(exc)) from None
        try:
            self._discover(conn)
        except (pymysql.Error, ColumnError) as exc:
            conn.close()
            raise Unavailable(self.redact(exc)) from None
        except Unavailable:
            conn.close()
            raise
        self.conn = conn

    def _discover(self, conn: pymysql.connections.Connection) -> None:
        with conn.cursor() as cur:
            cur.execute(COLUMNS_QUERY, (self.table,))
            names = [row[0] for row in cur.fetchall()]
        conn.commit()
        if not names:
            raise Unavailable(f"table {self.target} not found (or has no column)")
        active = map_columns(names, self.stack_keys, self.first_is_id)
        self.columns = [c.name for c in active]
        self.statement = build_statement(self.procedure, self.table, self.columns)
        self.build = row_builder([(c.key, my_renderer(c.type)) for c in active])
        log.debug("%s: %d columns in %s, statement %s", self.label, len(names), self.target,
                  self.statement)

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # closing a dead connection must not fail the worker
                pass

    def interrupt(self) -> None:
        """Cut a call that waits for the server (at stop)."""
        conn = self.conn
        sock = getattr(conn, "_sock", None)
        if sock is not None:
            try:
                sock.shutdown(2)
            except OSError:
                pass

    # -- writing ----------------------------------------------------------------------
    def write(self, records: list[dict]) -> int:
        conn = self.conn
        if conn is None or self.build is None:
            raise Unavailable("not connected")
        build = self.build
        rows = [build(r) for r in records]
        if self.procedure.kind in ("insert", "insert_into") and len(rows) > 1:
            try:
                with conn.cursor() as cur:
                    cur.executemany(self.statement, rows)
                conn.commit()
                return len(rows)
            except pymysql.Error as exc:
                self._rollback(conn, exc)
        return self._one_by_one(conn, rows)

    def _rollback(self, conn, exc: pymysql.Error) -> None:
        if not is_row_error(exc):
            raise Unavailable("execute failed: " + self.redact(exc)) from None
        try:
            conn.rollback()
        except pymysql.Error as again:
            raise Unavailable("execute failed: " + self.redact(again)) from None

    def _one_by_one(self, conn, rows: list[tuple]) -> int:
        stored = 0
        try:
            with conn.cursor() as cur:
                for row in rows:
                    try:
                        cur.execute(self.statement, row)
                        stored += 1
                    except pymysql.Error as exc:
                        if not is_row_error(exc):
                            raise
                        self._rejected(exc)
            conn.commit()
        except pymysql.Error as exc:
            # The transaction is gone with the connection: nothing of it was stored.
            raise Unavailable("execute failed: " + self.redact(exc)) from None
        return stored

    def _rejected(self, exc: pymysql.Error) -> None:
        self.rejected_logged += 1
        if self.rejected_logged <= LOGGED_REJECTS:
            log.error("%s: row rejected by the database: %s", self.label,
                      self.redact(exc).strip())
