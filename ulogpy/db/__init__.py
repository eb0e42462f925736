"""The SQL outputs' database layer (PGSQL, MYSQL, SQLITE3, and DBI on top of them).

ulogd's database layer executes one statement per event in the reader's
thread and loses its backlog at exit.  Here each database is a transport of
the delivery model (`ulogpy.delivery`): a writer thread owns the connection
and writes batched transactions, and rows wait in memory, then in the
on-disk spool, while the database is away (also across a restart).  Column
discovery, the column-to-key mapping and value rendering follow ulogd
(`columns`, `render`); `procedure` reads ulogd's `procedure` option for every
dialect, and statements bind every value as a parameter (`pgstatement`,
`mystatement`); `output` maps the SQL outputs' options onto the delivery
model.  Sinks: `sqlsink` (what every SQL server's sink shares), `pgsink`
(psycopg) and `mysqlsink` (PyMySQL) on top of it, and `sqlitesink`.
"""
