#!/usr/bin/env python3
"""nat-lookup latency on big histories: SQLite, PostgreSQL (and a JSON scan).

Builds a synthetic conntrack history of --flows flows (default 10 million) in
each SQL backend, in ulogd's `ulog2_ct` layout with the lookup index on
(reply_ip_daddr_str, reply_l4_dport, flow_start_sec), then times lookups as
the command does them (open the database, query, rank; one connection per
lookup) and, for PostgreSQL, also over one kept connection.  Every "hit"
lookup is checked: the flow the query was made from must come first.

History: 4 public addresses x 64000 ports, flows spread evenly over 30 days,
1 s to 10 min long, 1 in 8 UDP; the last 0.1 % still open.  A public
address:port is reused every ~4.6 hours (at 10M flows).  Queries: 80 % at a
random instant of a random flow ("hit"), 20 % at a random port and time
("miss", which walks that port's whole history).

PostgreSQL runs in a throwaway cluster (tests/pgcluster.py), with ulogd's own
table and single-column indexes (pgsql-ulogd2.sql) plus the lookup index.
The JSON figure is a scan of --json-flows flows (NEW + DESTROY lines as ulogd
writes them): it grows linearly with the file size.

    sudo .venv/bin/python scripts/bench_natlookup.py                 # 10M, both SQL
    sudo .venv/bin/python scripts/bench_natlookup.py --flows 200000 --backend all
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ulogpy.tools.natlookup.flows import Query, rank  # noqa: E402
from ulogpy.tools.natlookup.jsonlog import JsonSource  # noqa: E402
from ulogpy.tools.natlookup.postgresql import PostgresSource  # noqa: E402
from ulogpy.tools.natlookup.sql import (  # noqa: E402
    POSTGRESQL,
    SQLITE,
    Dialect,
    index_sql,
    lookup_sql,
    rows_to_flows,
)
from ulogpy.tools.natlookup.sqlite import SqliteSource  # noqa: E402

T0 = 1_790_000_000
SPAN = 30 * 86400
N_IPS, N_PORTS, PORT_STEP = 4, 64000, 7919  # 7919 is prime: ports are scattered
OPEN_FRACTION = 0.001
COLUMNS = ("oob_family", "orig_ip_saddr_str", "orig_ip_daddr_str", "orig_ip_protocol",
           "orig_l4_sport", "orig_l4_dport", "orig_raw_pktlen", "orig_raw_pktcount",
           "reply_ip_saddr_str", "reply_ip_daddr_str", "reply_ip_protocol",
           "reply_l4_sport", "reply_l4_dport", "reply_raw_pktlen", "reply_raw_pktcount",
           "icmp_code", "icmp_type", "ct_mark", "flow_start_sec", "flow_start_usec",
           "flow_end_sec", "flow_end_usec", "ct_event")


# ------------------------------------------------------------------ the synthetic history

class History:
    """Flow i in closed form, so a query can be made from any flow without storing it."""

    def __init__(self, n: int):
        self.n = n
        self.step = SPAN / n
        self.open_from = int(n * (1 - OPEN_FRACTION))

    def flow(self, i: int) -> dict:
        start = T0 + i * self.step
        return {
            "proto": 17 if i % 8 == 0 else 6,
            "inside_ip": f"10.{i % 64}.{i // 64 % 256}.{i // 16384 % 250 + 1}",
            "inside_port": 32768 + i % 28000,
            "public_ip": f"10.200.0.{i % N_IPS + 1}",
            "public_port": 1024 + (i * PORT_STEP) % N_PORTS,
            "remote_ip": f"10.201.{i % 250}.{i % 199 + 1}",
            "remote_port": 443 if i % 3 else 80,
            "start": start,
            "end": None if i >= self.open_from else start + 1 + (i * 31) % 600,
        }

    def sql_select(self, d: Dialect, series: str) -> str:
        """The same flows as one INSERT ... SELECT over `series` (column i = 0..n-1)."""
        step = self.step
        ip = d.inet
        start = f"({T0} + CAST(i * {step!r} AS INTEGER))"
        usec = f"(CAST(i * {step!r} * 1000000 AS BIGINT) % 1000000)"
        end = f"CASE WHEN i >= {self.open_from} THEN NULL ELSE {start} + 1 + (i * 31) % 600 END"
        endu = f"CASE WHEN i >= {self.open_from} THEN NULL ELSE {usec} END"
        proto = "CASE WHEN i % 8 = 0 THEN 17 ELSE 6 END"
        inside = ip("'10.' || (i % 64) || '.' || (i / 64 % 256) || '.' || (i / 16384 % 250 + 1)")
        remote = ip("'10.201.' || (i % 250) || '.' || (i % 199 + 1)")
        public = ip(f"'10.200.0.' || (i % {N_IPS} + 1)")
        pport = f"(1024 + (i * {PORT_STEP}) % {N_PORTS})"
        rport = "CASE WHEN i % 3 = 0 THEN 80 ELSE 443 END"
        values = ["2", inside, remote, proto, "(32768 + i % 28000)", rport, "(i % 5000 + 60)",
                  "(i % 40 + 1)", remote, public, proto, rport, pport, "(i % 9000 + 60)",
                  "(i % 30 + 1)", "NULL", "NULL", "0", start, usec, end, endu,
                  f"CASE WHEN i >= {self.open_from} THEN 1 ELSE 4 END"]
        return (f"INSERT INTO ulog2_ct ({', '.join(COLUMNS)}) "
                f"SELECT {', '.join(values)} FROM {series}")

    def json_lines(self, i: int) -> list[str]:
        f = self.flow(i)
        base = {"dvc": "Netfilter", "orig.ip.protocol": f["proto"],
                "orig.l4.sport": f["inside_port"], "orig.l4.dport": f["remote_port"],
                "orig.raw.pktlen": 0, "orig.raw.pktcount": 0,
                "reply.ip.protocol": f["proto"], "reply.l4.sport": f["remote_port"],
                "reply.l4.dport": f["public_port"], "reply.raw.pktlen": 0,
                "reply.raw.pktcount": 0, "ct.mark": 0, "ct.id": i + 1}
        tail = {"oob.family": 2, "oob.protocol": 0, "src_ip": f["inside_ip"],
                "dest_ip": f["remote_ip"], "reply.ip.saddr.str": f["remote_ip"],
                "reply.ip.daddr.str": f["public_ip"]}
        s, e = f["start"], f["end"]
        new = {"timestamp": _stamp(s), **base, "ct.event": 1, "flow.start.sec": int(s),
               "flow.start.usec": int(s % 1 * 1e6), **tail}
        lines = [json.dumps(new)]
        if e is not None:
            done = {"timestamp": _stamp(e), **base, "orig.raw.pktlen": 700,
                    "ct.event": 4, "flow.start.sec": int(s),
                    "flow.start.usec": int(s % 1 * 1e6), "flow.end.sec": int(e),
                    "flow.end.usec": int(s % 1 * 1e6), **tail}
            lines.append(json.dumps(done))
        return lines


def _stamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))


# ------------------------------------------------------------------ queries and timing

def make_queries(hist: History, count: int, seed: int = 1) -> list[tuple[Query, str | None]]:
    """(query, expected first inside ip:port or None for a miss)."""
    rnd = random.Random(seed)
    out = []
    for k in range(count):
        if k % 5 == 4:
            q = Query(ip=f"10.200.0.{rnd.randrange(N_IPS) + 1}",
                      port=1024 + rnd.randrange(N_PORTS), at=T0 + rnd.random() * SPAN)
            out.append((q, None))
            continue
        i = rnd.randrange(hist.n)
        f = hist.flow(i)
        end = f["end"] if f["end"] is not None else f["start"] + 3600
        at = f["start"] + rnd.random() * (end - f["start"])
        q = Query(ip=f["public_ip"], port=f["public_port"], at=at)
        out.append((q, f"{f['inside_ip']}:{f['inside_port']}"))
    return out


def timed(queries, lookup: Callable[[Query], list]) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"hit": [], "miss": []}
    wrong = 0
    for q, expected in queries:
        t = time.perf_counter()
        found = rank(lookup(q), q)
        times["hit" if expected else "miss"].append((time.perf_counter() - t) * 1000)
        if expected and (not found or f"{found[0].inside_ip}:{found[0].inside_port}"
                         != expected):
            wrong += 1
    if wrong:
        sys.exit(f"bench: {wrong} lookups did not rank the expected flow first")
    return times


def report(name: str, times: dict[str, list[float]]) -> None:
    for kind, values in times.items():
        if not values:
            continue
        ordered = sorted(values)
        p90, p99 = (ordered[min(len(ordered) - 1, int(p * len(ordered)))] for p in (.9, .99))
        print(f"  {name:<34} {kind:<4} n={len(ordered):<5} median "
              f"{statistics.median(ordered):7.2f} ms  p90 {p90:7.2f}  p99 {p99:7.2f}  "
              f"max {ordered[-1]:7.2f}")


def step(what: str):
    print(f"bench: {what} ...", flush=True)
    return time.monotonic()


def done(t: float) -> None:
    print(f"bench:   {time.monotonic() - t:.1f} s", flush=True)


# ------------------------------------------------------------------ backends

def bench_sqlite(hist: History, queries, workdir: Path) -> None:
    path = workdir / "flows.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    cols = ", ".join(f"{c} {'TEXT' if c.endswith('_str') else 'INTEGER'}" for c in COLUMNS)
    db.execute(f"CREATE TABLE ulog2_ct (_ct_id INTEGER PRIMARY KEY, {cols})")
    t = step(f"SQLite: inserting {hist.n} flows")
    series = (f"(WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s "
              f"WHERE i < {hist.n - 1}) SELECT i FROM s)")
    db.execute("BEGIN")
    db.execute(hist.sql_select(SQLITE, series))
    db.execute("COMMIT")
    done(t)
    t = step("SQLite: creating the lookup index")
    db.execute(index_sql("ulog2_ct"))
    db.execute("ANALYZE")
    done(t)
    db.close()
    print(f"bench: SQLite file {path.stat().st_size / 2**30:.2f} GiB")
    source = SqliteSource(str(path))
    timed(queries[:20], source.lookup)  # warm the page cache like a second lookup would
    report("SQLite, open + query + rank", timed(queries, source.lookup))


def ulogd_table_ddl() -> tuple[str, str]:
    """(sequence + table, indexes) of ulog2_ct from ulogd's own pgsql-ulogd2.sql."""
    from tests.pgcluster import ulogd_schema_sql

    text = ulogd_schema_sql()
    table = re.search(r"CREATE SEQUENCE ulog2_ct__ct_id_seq;.*?\) WITH \(OIDS=FALSE\);",
                      text, re.S)
    indexes = re.findall(r"^CREATE INDEX ulog2_ct_\w+ ON ulog2_ct\(\w+\);", text, re.M)
    if table is None or not indexes:
        sys.exit("bench: ulog2_ct not found in ulogd's pgsql-ulogd2.sql")
    return table.group(0).replace(" WITH (OIDS=FALSE)", ""), "\n".join(indexes)


def bench_postgresql(hist: History, queries) -> None:
    import psycopg

    from tests.pgcluster import PgCluster, pg_skip_reason

    reason = pg_skip_reason()
    if reason:
        print(f"bench: PostgreSQL skipped: {reason}")
        return
    conf = {"shared_buffers": "'1GB'", "maintenance_work_mem": "'1GB'",
            "max_wal_size": "'8GB'", "checkpoint_timeout": "'30min'"}
    with PgCluster(extra_conf=conf) as pg:
        table, indexes = ulogd_table_ddl()
        pg.create_db("ulogd", table)
        dsn = pg.dsn("ulogd")
        with psycopg.connect(dsn, autocommit=True) as conn:
            t = step(f"PostgreSQL: inserting {hist.n} flows")
            conn.execute(hist.sql_select(
                POSTGRESQL, f"generate_series(CAST(0 AS bigint), {hist.n - 1}) AS s(i)"))
            done(t)
            t = step("PostgreSQL: ulogd's indexes, the lookup index, ANALYZE")
            conn.execute(indexes)
            conn.execute(index_sql("ulog2_ct"))
            conn.execute("VACUUM ANALYZE ulog2_ct")
            done(t)
            size = conn.execute("SELECT pg_total_relation_size('ulog2_ct')").fetchone()[0]
            print(f"bench: PostgreSQL table + indexes {size / 2**30:.2f} GiB")
            sql, params = lookup_sql(POSTGRESQL, "ulog2_ct", queries[0][0])
            plan = [r[0] for r in conn.execute("EXPLAIN " + sql, params)]
            print("bench: plan of a lookup:\n    " + "\n    ".join(plan))

            def kept(q: Query) -> list:
                sql, params = lookup_sql(POSTGRESQL, "ulog2_ct", q)
                cur = conn.execute(sql, params)
                return rows_to_flows([c.name for c in cur.description], cur.fetchall(), "pg")

            timed(queries[:20], kept)
            report("PostgreSQL, kept connection", timed(queries, kept))
        source = PostgresSource(dsn)
        report("PostgreSQL, connect + query + rank", timed(queries, source.lookup))
        cli_times(["--source", f"postgresql:///ulogd?host={pg.sockdir}&port={pg.port}"
                                f"&user=postgres"], queries)


def bench_json(hist_n: int, queries_n: int, workdir: Path) -> None:
    hist = History(hist_n)
    path = workdir / "flows.json"
    t = step(f"JSON: writing {hist_n} flows (NEW + DESTROY lines)")
    with open(path, "w") as fh:
        for i in range(hist_n):
            fh.write("\n".join(hist.json_lines(i)) + "\n")
    done(t)
    size = path.stat().st_size
    queries = make_queries(hist, queries_n)
    source = JsonSource(str(path))
    times = timed(queries, source.lookup)
    report(f"JSON scan of {size / 2**20:.0f} MiB", times)
    per = statistics.median(times["hit"]) / 1000
    print(f"  JSON: {size / 2**20 / per:.0f} MiB/s, {2 * hist_n / per / 1e6:.2f} M lines/s; "
          f"10M flows (~{size * 10e6 / hist_n / 2**30:.1f} GiB) would take "
          f"~{per * 10e6 / hist_n:.0f} s")


def cli_times(src: list[str], queries, n: int = 5) -> None:
    """The whole command once per lookup (interpreter start and imports included)."""
    ulogpy = str(Path(sys.executable).with_name("ulogpy"))
    if not os.path.exists(ulogpy):
        return
    values = []
    for q, _ in queries[:n]:
        t = time.perf_counter()
        subprocess.run([ulogpy, "nat-lookup", "--ip", q.ip, "--port", str(q.port), "--at",
                        f"{q.at:.6f}", *src, "--json"], capture_output=True, check=False)
        values.append((time.perf_counter() - t) * 1000)
    print(f"  {'whole `ulogpy nat-lookup` process':<34} n={n}  median "
          f"{statistics.median(values):7.2f} ms (interpreter start-up included)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flows", type=int, default=10_000_000)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--backend", choices=("sqlite", "postgresql", "json", "sql", "all"),
                    default="sql")
    ap.add_argument("--json-flows", type=int, default=1_000_000)
    ap.add_argument("--dir", default="/var/tmp", help="where to build the SQLite/JSON files")
    ap.add_argument("--keep", action="store_true", help="keep the files")
    args = ap.parse_args()
    hist = History(args.flows)
    queries = make_queries(hist, args.queries)
    workdir = Path(tempfile.mkdtemp(prefix="ulogpy-bench-nat-", dir=args.dir))
    print(f"bench: {args.flows} flows, {args.queries} lookups, files in {workdir}")
    try:
        if args.backend in ("sqlite", "sql", "all"):
            bench_sqlite(hist, queries, workdir)
            cli_times(["--source", f"sqlite://{workdir}/flows.db"], queries)
        if args.backend in ("postgresql", "sql", "all"):
            bench_postgresql(hist, queries)
        if args.backend in ("json", "all"):
            bench_json(args.json_flows, max(5, args.queries // 100), workdir)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
