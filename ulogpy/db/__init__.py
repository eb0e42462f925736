"""The SQL outputs' shared machinery (PGSQL, SQLITE3).

ulogd's database layer executes one statement per event in the reader's
thread and loses its backlog at exit.  Here an output's `write()` only
appends the record to a bounded in-memory queue (`backlog`); a writer
thread (`worker`) owns the database connection and drains the queue in
batched transactions.  Overflow and everything still queued at shutdown go
to an append-only on-disk spool (`spool`), replayed in order after a
restart or reconnect.  Column discovery, the column-to-key mapping and
value rendering follow ulogd (`columns`, `render`); statements bind every
value as a parameter (`pgstatement`).
"""
