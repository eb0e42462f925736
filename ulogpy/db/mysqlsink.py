"""MySQL / MariaDB through PyMySQL: discovery as ulogd does it, batched writes.

What every SQL server's sink does is in `sqlsink.SqlSink`; here is MySQL's
part.  Discovery lists the table's (or view's) columns in order, as ulogd's
MYSQL lists a table's fields.  A batch is one transaction: a multi-row INSERT for
INSERT procedures, else one call per row in order (INSERT_OR_REPLACE_CT needs
the order).  InnoDB undoes only the statement that failed, so a row refused
for its data is counted as rejected and the rest of the batch still commits;
losing the server undoes the whole batch, which the writer keeps and retries.
"""

from __future__ import annotations

from collections.abc import Sequence

import pymysql
from pymysql.constants import CLIENT

from ulogpy.core.keys import Key
from ulogpy.core.plugin import Unavailable
from ulogpy.db.mystatement import build_statement
from ulogpy.db.myuri import default_socket
from ulogpy.db.procedure import Procedure
from ulogpy.db.redact import Redactor
from ulogpy.db.render import my_renderer
from ulogpy.db.sqlsink import SqlSink

COLUMNS_QUERY = ("SELECT column_name FROM information_schema.columns WHERE "
                 "table_schema = DATABASE() AND table_name = %s ORDER BY ordinal_position")
#: Server error codes that concern one row's data (out of range, too long, bad value,
#: NULL in NOT NULL, duplicate key, foreign key, SIGNAL from a procedure).
ROW_ERROR_CODES = frozenset({1048, 1062, 1216, 1217, 1264, 1265, 1292, 1366, 1406, 1411,
                             1451, 1452, 1644, 1690, 3819})
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


def connect_from_options(cfg, connect_timeout: int) -> dict:
    """`connect_args` from a MYSQL (or DBI) section's options: db, host, user, pass, port
    and ulogpy's `socket` (else $MYSQL_UNIX_PORT, else Debian's)."""
    return connect_args(host=cfg.host, port=cfg.port, user=cfg.user,
                        password=getattr(cfg, "pass"), db=cfg.db,
                        socket=cfg.socket or default_socket(),
                        connect_timeout=connect_timeout)


class MysqlSink(SqlSink):
    """A MySQL table as a transport of the delivery model (written from a thread)."""

    driver_error = pymysql.Error
    renderer = staticmethod(my_renderer)

    def __init__(self, *, label: str, connect: dict, table: str, procedure: Procedure,
                 stack_keys: Sequence[Key], redact: Redactor,
                 first_is_id: bool = False) -> None:
        super().__init__(label=label, target=f"{connect.get('database')}.{table}",
                         table=table, procedure=procedure, stack_keys=stack_keys,
                         redact=redact, first_is_id=first_is_id)
        self.connect = connect

    # -- connection -------------------------------------------------------------------
    def _connect(self) -> pymysql.connections.Connection:
        return pymysql.connect(**self.connect)

    def _column_names(self, conn: pymysql.connections.Connection) -> list[str]:
        with conn.cursor() as cur:
            cur.execute(COLUMNS_QUERY, (self.table,))
            names = [row[0] for row in cur.fetchall()]
        conn.commit()
        return names

    def _statement(self, columns: list[str]) -> str:
        return build_statement(self.procedure, self.table, columns)

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
        rows = self._rows(records)
        conn = self.conn
        if self.procedure.inserts and len(rows) > 1:
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
