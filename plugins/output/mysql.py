"""MYSQL: rows into MySQL / MariaDB tables or ulogd's SQL functions (spec 6).

As in ulogd, the columns of `table` (a table or a view such as ulogd's
`ulog` and `conntrack`) name the keys to send; `procedure` chooses the
statement (INSERT, INSERT INTO ..., CALL ..., or a function such as
INSERT_PACKET_FULL, INSERT_CT, or INSERT_OR_REPLACE_CT, which `ulogpy db
init --mysql` adds).  Unlike ulogd, the server may be down at start, the
reader never waits for it, rows wait in memory and then in a spool while it
is away and survive a restart, and the password never reaches the log.
An empty `host` or `localhost` is the unix socket (`socket`, else
$MYSQL_UNIX_PORT, else /run/mysqld/mysqld.sock), as for libmysqlclient.

    [global]
    stack=ct1:NFCT,ip2str1:IP2STR,my1:MYSQL
    [ct1]
    hash_enable=0
    [my1]
    db="ulogd"
    host="localhost"
    user="ulogd"
    pass="secret"
    table="conntrack_events"
    procedure="INSERT_OR_REPLACE_CT"

(`conntrack_events` and INSERT_OR_REPLACE_CT come from `ulogpy db init --mysql`;
with ulogd's own objects: IP2BIN, table="conntrack", procedure="INSERT_CT".)
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ulogpy.core.plugin import Option
from ulogpy.db.mystatement import parse_procedure
from ulogpy.db.output import DB_OPTIONS, DbOutput, ulogd_common_options, ulogd_queue_size
from ulogpy.db.pgstatement import ProcedureError
from ulogpy.db.redact import Redactor

if TYPE_CHECKING:  # PyMySQL is loaded only when a MYSQL stack is used
    from ulogpy.db.mysqlsink import MysqlSink

DEFAULT_CONNECT_TIMEOUT = 5
DEFAULT_SOCKET = "/run/mysqld/mysqld.sock"


def check_procedure(value: str) -> str | None:
    try:
        parse_procedure(value)
    except ProcedureError as exc:
        return str(exc)
    return None


def default_socket() -> str:
    return os.environ.get("MYSQL_UNIX_PORT") or DEFAULT_SOCKET


class MYSQL(DbOutput):
    name = "MYSQL"
    description = "MySQL / MariaDB tables and ulogd's SQL functions"
    options = (
        *ulogd_common_options(check_procedure),
        Option("db", str, "", mandatory=True, help="database name"),
        Option("host", str, "", mandatory=True,
               help="server host name; empty or localhost: the unix socket"),
        Option("user", str, "", mandatory=True, help="database user"),
        Option("pass", str, "", mandatory=True, help="password"),
        Option("port", int, 0, help="TCP port (0: 3306)"),
        Option("socket", str, "", ulogd=False,
               help="unix socket for an empty host or localhost (default: $MYSQL_UNIX_PORT, "
                    f"else {DEFAULT_SOCKET})"),
        *DB_OPTIONS,
    )

    def configure(self) -> None:
        cfg = self.config
        self.procedure = parse_procedure(cfg.procedure)
        password = getattr(cfg, "pass")  # a keyword in Python, an option name in ulogd
        self.redact = Redactor([password])
        self.connect = _connect(cfg.host, cfg.port, cfg.user, password, cfg.db,
                                cfg.socket or default_socket(),
                                cfg.connect_timeout or DEFAULT_CONNECT_TIMEOUT)
        ulogd_queue_size(cfg, self)
        super().configure()

    def initial_backoff(self) -> float:
        # ulogd: reconnect=0 disables the plugin for good; ulogpy keeps retrying.
        return float(max(1, self.config.reconnect))

    def make_sink(self) -> MysqlSink:
        from ulogpy.db.mysqlsink import MysqlSink

        return MysqlSink(label=str(self), connect=self.connect, table=self.config.table,
                         procedure=self.procedure, stack_keys=self.stack_keys,
                         redact=self.redact)


def _connect(host: str, port: int, user: str, password: str, db: str, socket: str,
             timeout: int) -> dict:
    from ulogpy.db.mysqlsink import connect_args

    return connect_args(host=host, port=port, user=user, password=password, db=db,
                        socket=socket, connect_timeout=timeout)
