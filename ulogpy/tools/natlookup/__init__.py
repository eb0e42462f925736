"""`ulogpy nat-lookup`: which inside host used public IP:port at time T.

The conntrack history (ulogd/ulogpy JSON lines, an SQLite file, ulogd's
PostgreSQL `ulog2_ct` table) is read back as flows: the original tuple is
the inside host, the reply tuple's destination is the public IP:port the NAT
picked.  Modules: `timeparse` (TIME arguments, RFC 3339 output), `flows`
(the flow and query model, ranking), `merge` (NEW/DESTROY records into
intervals), `sql` (the one query for both SQL engines), one module per
source kind (`sqlite`, `postgresql`, `jsonlog`), `sources` (SRC strings and
a config's history), `output` and `cli`.
"""
