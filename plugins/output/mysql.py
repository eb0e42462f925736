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

from typing import TYPE_CHECKING

from ulogpy.core.plugin import Option
from ulogpy.db.mystatement import parse_procedure
from ulogpy.db.myuri import DEFAULT_SOCKET, default_socket
from ulogpy.db.output import DB_OPTIONS, UlogdSqlOutput, ulogd_common_options
from ulogpy.db.procedure import procedure_check
from ulogpy.db.redact import Redactor

if TYPE_CHECKING:  # PyMySQL is loaded only when a MYSQL stack is used
    from ulogpy.db.mysqlsink import MysqlSink

__all__ = ["MYSQL", "default_socket"]  # default_socket: also nat-lookup's


class MYSQL(UlogdSqlOutput):
    name = "MYSQL"
    description = "MySQL / MariaDB tables and ulogd's SQL functions"
    options = (
        *ulogd_common_options(procedure_check(parse_procedure)),
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
        from ulogpy.db.mysqlsink import connect_from_options

        cfg = self.config
        self.procedure = parse_procedure(cfg.procedure)
        self.redact = Redactor([getattr(cfg, "pass")])  # `pass`: a keyword in Python
        self.connect = connect_from_options(cfg, self.connect_timeout())
        super().configure()

    def make_sink(self) -> MysqlSink:
        from ulogpy.db.mysqlsink import MysqlSink

        return MysqlSink(label=str(self), connect=self.connect, table=self.config.table,
                         procedure=self.procedure, stack_keys=self.stack_keys,
                         redact=self.redact)

