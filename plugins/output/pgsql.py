"""PGSQL: rows into PostgreSQL tables or ulogd's SQL functions (spec 4.14, 6).

The columns of `table` (a table or a view) name the keys to send, as in
ulogd; `procedure` chooses the statement (INSERT, INSERT INTO ..., CALL
..., or a function such as INSERT_OR_REPLACE_CT).  Unlike ulogd, the
database may be down at start, the reader never waits for it, rows wait in
memory and then in a spool while it is away and survive a restart, and the
password never reaches the log.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from ulogpy.core.plugin import Option
from ulogpy.db.conninfo import pg_conninfo
from ulogpy.db.output import DB_OPTIONS, UlogdSqlOutput, ulogd_common_options
from ulogpy.db.pgstatement import parse_procedure
from ulogpy.db.procedure import procedure_check
from ulogpy.db.redact import Redactor, secrets_of_conninfo

if TYPE_CHECKING:  # psycopg (~0.2 s to import) is loaded only when a PGSQL stack is used
    from ulogpy.db.pgsink import PgSink

# ulogd's option `schema` becomes a field of the options model, where pydantic warns that
# it shadows BaseModel.schema (a deprecated class method nobody calls on these models).
warnings.filterwarnings("ignore", message='Field name "schema"', category=UserWarning)


class PGSQL(UlogdSqlOutput):
    name = "PGSQL"
    description = "PostgreSQL tables and ulogd's SQL functions"
    options = (
        *ulogd_common_options(procedure_check(parse_procedure)),
        Option("db", str, "", mandatory=True, help="database name"),
        Option("host", str, "", help="host name or unix socket directory"),
        Option("user", str, "", mandatory=True, help="database user"),
        Option("pass", str, "", help="password"),
        Option("port", int, 0, help="port (0: libpq's default)"),
        Option("schema", str, "public", help="schema of the table"),
        Option("connstring", str, "",
               help="libpq connection string; replaces db, host, user, pass and port"),
        *DB_OPTIONS,
    )

    def configure(self) -> None:
        cfg = self.config
        self.procedure = parse_procedure(cfg.procedure)
        password = getattr(cfg, "pass")  # a keyword in Python, an option name in ulogd
        secrets = [password]
        if cfg.connstring:
            conninfo = cfg.connstring
            secrets += secrets_of_conninfo(conninfo)
        else:
            conninfo = pg_conninfo(host=cfg.host, port=cfg.port, db=cfg.db, user=cfg.user,
                                   password=password)
        self.redact = Redactor(secrets)
        self.conninfo = conninfo
        super().configure()

    def make_sink(self) -> PgSink:
        from ulogpy.db.pgsink import PgSink

        cfg = self.config
        return PgSink(label=str(self), conninfo=self.conninfo,
                      connect_timeout=self.connect_timeout(),
                      schema=cfg.schema, table=cfg.table, procedure=self.procedure,
                      stack_keys=self.stack_keys, redact=self.redact)
