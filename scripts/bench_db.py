#!/usr/bin/env python3
"""PGSQL rows per second: ulogpy against ulogd 2.0.8 on the same conntrack flows.

Both daemons run side by side in the firewall namespace of a throwaway lan/fw/wan
topology, each writing the same NFCT events (hash_enable=0: NEW, then DESTROY) through
INSERT_OR_REPLACE_CT into its own database of a throwaway PostgreSQL cluster made from
ulogd's pgsql-ulogd2.sql.  A burst of N UDP flows gives N NEW events (N inserts); a
conntrack flush then gives N DESTROY events (N updates).  For each phase and each daemon
the time from the burst (or the flush) to the last row applied is measured; the ratio
ulogpy/ulogd of rows per second is printed.

    scripts/bench_db.py [--flows 3000]      (root; needs ulogd2-pgsql and postgresql)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from tests.netns import NatTopology, conntrack_flush  # noqa: E402
from tests.pgcluster import PgCluster, ulogd_schema_sql  # noqa: E402
from tests.ulogd_ref import ULOGD_BIN, ULOGPY, UlogdProcess  # noqa: E402

CONF = """\
[global]
loglevel=5
stack=ct1:NFCT,ip2str1:IP2STR,pg1:PGSQL
[ct1]
hash_enable=0
netlink_socket_buffer_size=16777216
netlink_socket_buffer_maxsize=33554432
[pg1]
db="{db}"
host="{sock}"
port={port}
user="postgres"
table="ulog2_ct"
procedure="INSERT_OR_REPLACE_CT"
"""
BURST = ("import socket,sys\n"
         "dst, first, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])\n"
         "for i in range(n):\n"
         "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
         "    s.bind(('', 20000 + i % 40000)); s.sendto(b'x', (dst, first + i // 40000))\n"
         "    s.close()\n")


def progress(conninfo: str) -> tuple[int, int]:
    """(rows inserted, rows completed by DESTROY)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return conn.execute("SELECT count(*), count(*) FILTER (WHERE ct_event = 4) "
                            "FROM ulog2_ct").fetchone()


def wait_phase(dbs: dict[str, str], index: int, target: int, start: float,
               quiet: float = 5.0, limit: float = 300.0) -> dict[str, tuple[int, float]]:
    """Poll until each database reaches `target` (or stops moving); (count, seconds)."""
    done: dict[str, tuple[int, float]] = {}
    last: dict[str, tuple[int, float]] = {name: (-1, start) for name in dbs}
    while len(done) < len(dbs) and time.monotonic() - start < limit:
        now = time.monotonic()
        for name, conninfo in dbs.items():
            if name in done:
                continue
            value = progress(conninfo)[index]
            if value != last[name][0]:
                last[name] = (value, now)
            if value >= target or now - last[name][1] > quiet:
                done[name] = (value, last[name][1] - start)
        time.sleep(0.05)
    for name in dbs:
        done.setdefault(name, (last[name][0], last[name][1] - start))
    return done


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=3000)
    args = ap.parse_args()
    n = args.flows
    tmp = Path(tempfile.mkdtemp(prefix="bench-db-"))
    with PgCluster() as pg, NatTopology(fw_sysctls={
            "net.netfilter.nf_conntrack_acct": 1,
            "net.netfilter.nf_conntrack_timestamp": 1,
            "net.netfilter.nf_conntrack_max": max(65536, 4 * n)}) as topo:
        schema = ulogd_schema_sql()
        dbs = {"ulogd": pg.create_db("bench_ulogd", schema),
               "ulogpy": pg.create_db("bench_ulogpy", schema)}
        procs = {}
        for name in dbs:
            text = CONF.format(db=f"bench_{name}", sock=pg.sockdir, port=pg.port)
            if name == "ulogpy":
                text += f'spool_dir="{tmp}/spool"\n'
            procs[name] = UlogdProcess(topo.fw, text, tmp / name,
                                       binary=ULOGPY if name == "ulogpy" else ULOGD_BIN)
        with procs["ulogd"], procs["ulogpy"]:
            start = time.monotonic()
            topo.lan.python(["-c", BURST, topo.wan_ip4, "9", str(n)], timeout=600)
            new = wait_phase(dbs, 0, n, start)
            time.sleep(1.0)
            start = time.monotonic()
            conntrack_flush(topo.fw)
            destroy = wait_phase(dbs, 1, n, start)
            procs["ulogpy"].stop()
        print(f"{n} UDP flows through NAT, INSERT_OR_REPLACE_CT, both daemons side by side")
        rates = {}
        for name in dbs:
            (rows, t_new), (done, t_destroy) = new[name], destroy[name]
            rate_new = rows / t_new if t_new > 0 else float("inf")
            rate_destroy = done / t_destroy if t_destroy > 0 else float("inf")
            total = (rows + done) / (t_new + t_destroy)
            rates[name] = (rate_new, rate_destroy, total)
            print(f"  {name:6}: NEW {rows:6d} rows in {t_new:6.2f} s ({rate_new:8.0f}/s), "
                  f"DESTROY {done:6d} in {t_destroy:6.2f} s ({rate_destroy:8.0f}/s), "
                  f"overall {total:8.0f} rows/s")
        ours, theirs = rates["ulogpy"], rates["ulogd"]
        print(f"ratio ulogpy/ulogd: NEW {ours[0] / theirs[0]:.2f}x, DESTROY "
              f"{ours[1] / theirs[1]:.2f}x, overall {ours[2] / theirs[2]:.2f}x")
        print("(the NEW phase includes generating the traffic, which bounds both daemons)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
