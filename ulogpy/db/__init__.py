"""The SQL outputs' database layer (PGSQL, MYSQL, SQLITE3, and DBI on top of them).

ulogd's database layer executes one statement per event in the reader's
thread and loses its backlog at exit.  Here each database is a transport of
the delivery model (`ulogpy.delivery`): a writer thread owns the connection
and writes batched transactions, and rows wait in memory, then in the
on-disk spool, while the database is away (also across a restart).  Column
discovery, the column-to-key mapping and value rendering follow ulogd
(`columns`, `render`); statements bind every value as a parameter
(`pgstatement`, `mystatement`); `output` maps the SQL outputs' options onto
the delivery model.  Sinks: `pgsink` (psycopg), `mysqlsink` (PyMySQL),
`sqlitesink`.
"""
