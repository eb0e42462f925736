"""DBI: ulogd's libdbi output, each `dbtype` written by ulogpy's own backend (spec 6).

A ulogd.conf that uses DBI keeps working and writes the same rows: `pgsql`
goes through PGSQL's sink, `mysql` through MYSQL's, `sqlite3` through
SQLITE3's, with DBI's differences from those plugins kept:

* the first column of `table` is never written, whatever its name (DBI takes
  it for the row id; PGSQL and MYSQL skip it only when it starts with `_`);
* values are SQL text as in the other SQL plugins (spec 6.2), so in SQLite
  unsigned 32-bit values stay positive and an address is its 32-bit slot;
* `sqlite3`: `db` is a file name in libdbi's SQLite directory
  (`sqlite3_dbdir`, libdbi's /usr/var/lib/libdbi/sqlite3, as ulogd sets none),
  or an absolute path; only `procedure=INSERT` makes sense there;
* `mysql`: an empty host or `localhost` is the unix socket, as in MYSQL;
* `port`: ulogd 2.0.8 never hands it to libdbi (the driver's default port is used,
  5432 for pgsql); ulogpy uses it when it is set.

Like every SQL output of ulogpy: the reader never waits for the database,
rows are batched, spooled while it is away (also across a restart), and the
password never reaches the log.

    [global]
    stack=ct1:NFCT,ip2str1:IP2STR,dbi1:DBI
    [ct1]
    hash_enable=0
    [dbi1]
    dbtype="pgsql"
    db="ulogd"
    host="localhost"
    user="ulogd"
    pass="secret"
    table="ulog2_ct"
    procedure="INSERT_OR_REPLACE_CT"
"""

from __future__ import annotations

import os
import warnings

from ulogpy.core.plugin import Option, PluginError, Transport
from ulogpy.db import mystatement, pgstatement
from ulogpy.db.conninfo import pg_conninfo
from ulogpy.db.myuri import DEFAULT_SOCKET
from ulogpy.db.output import DB_OPTIONS, UlogdSqlOutput, ulogd_common_options
from ulogpy.db.procedure import ProcedureError, procedure_check
from ulogpy.db.redact import Redactor

# ulogd's option `schema` shadows pydantic's BaseModel.schema (see PGSQL).
warnings.filterwarnings("ignore", message='Field name "schema"', category=UserWarning)
DBTYPES = ("pgsql", "mysql", "sqlite3")
LIBDBI_SQLITE3_DIR = "/usr/var/lib/libdbi/sqlite3"
#: `procedure` must suit one database type at least (configure checks the chosen one).
_check_procedure = procedure_check(pgstatement.parse_procedure, mystatement.parse_procedure)


class DBI(UlogdSqlOutput):
    name = "DBI"
    description = "ulogd's libdbi output (pgsql, mysql, sqlite3) on ulogpy's own backends"
    options = (
        *ulogd_common_options(_check_procedure),
        Option("db", str, "", mandatory=True,
               help="database name (sqlite3: file in sqlite3_dbdir, or an absolute path)"),
        Option("host", str, "", help="server host name or socket directory"),
        Option("user", str, "", mandatory=True, help="database user"),
        Option("pass", str, "", help="password"),
        Option("port", int, 0, help="port (0: the driver's default)"),
        Option("schema", str, "public", help="pgsql: schema of the table"),
        Option("dbtype", str, "", mandatory=True, choices=DBTYPES,
               help="database type: pgsql, mysql or sqlite3"),
        Option("sqlite3_dbdir", str, LIBDBI_SQLITE3_DIR, ulogd=False,
               help="sqlite3: the directory of a relative `db` (libdbi's default)"),
        Option("socket", str, "", ulogd=False,
               help="mysql: unix socket for an empty host or localhost (default: "
                    f"$MYSQL_UNIX_PORT, else {DEFAULT_SOCKET})"),
        *DB_OPTIONS,
    )

    def configure(self) -> None:
        cfg = self.config
        self.dbtype = cfg.dbtype.lower()
        password = getattr(cfg, "pass")  # a keyword in Python, an option name in ulogd
        self.redact = Redactor([password])
        module = mystatement if self.dbtype == "mysql" else pgstatement
        try:
            self.procedure = module.parse_procedure(cfg.procedure)
        except ProcedureError as exc:
            raise PluginError(f"procedure: {exc}") from None
        if self.dbtype == "sqlite3" and self.procedure.kind != "insert":
            raise PluginError(f"procedure '{cfg.procedure}': dbtype sqlite3 takes only "
                              "INSERT (SQLite has no SQL functions to call)")
        if self.dbtype == "pgsql":
            self.conninfo = pg_conninfo(host=cfg.host, port=cfg.port, db=cfg.db,
                                        user=cfg.user, password=password)
        super().configure()

    def sqlite_path(self) -> str:
        cfg = self.config
        return cfg.db if os.path.isabs(cfg.db) else os.path.join(cfg.sqlite3_dbdir, cfg.db)

    def make_sink(self) -> Transport:
        cfg = self.config
        timeout = self.connect_timeout()
        if self.dbtype == "pgsql":
            from ulogpy.db.pgsink import PgSink

            return PgSink(label=str(self), conninfo=self.conninfo, connect_timeout=timeout,
                          schema=cfg.schema, table=cfg.table, procedure=self.procedure,
                          stack_keys=self.stack_keys, redact=self.redact, first_is_id=True)
        if self.dbtype == "mysql":
            from ulogpy.db.mysqlsink import MysqlSink, connect_from_options

            return MysqlSink(label=str(self), connect=connect_from_options(cfg, timeout),
                             table=cfg.table, procedure=self.procedure,
                             stack_keys=self.stack_keys, redact=self.redact, first_is_id=True)
        from ulogpy.db.render import dbi_sqlite_renderer
        from ulogpy.db.sqlitesink import SqliteSink

        return SqliteSink(label=str(self), path=self.sqlite_path(), table=cfg.table,
                          stack_keys=self.stack_keys, renderer=dbi_sqlite_renderer,
                          first_is_id=True)
