"""PGSQL on live conntrack flows, side by side with ulogd 2.0.8.

* Differential: both daemons log the same NFCT events (hash_enable=0, NEW and DESTROY)
  through INSERT_OR_REPLACE_CT into their own database made from ulogd's shipped
  pgsql-ulogd2.sql; the tables must hold the same rows but for surrogate ids and the
  start times each daemon reads from its own clock (the kernel stamps DESTROY only).
* Restart: the PostgreSQL server is stopped and started in the middle of a stream of
  flows; ulogpy must end with every flow's NEW row completed by its DESTROY.  ulogd runs
  through the same restart; its loss is printed (`pytest -s`) for the closing note.
"""

from __future__ import annotations

import time

import pytest

from tests.compare import CLOCK_TOLERANCE_S
from tests.db.helpers import query, wait_for
from tests.db.sidebyside import (
    flow_topology,
    nflog_ruleset,
    packet_traffic,
    side_by_side,
    udp_flows,
    wait_alike,
)
from tests.netns import conntrack_flush

pytestmark = [pytest.mark.live, pytest.mark.ulogd]

CONF = """\
[global]
loglevel={loglevel}
stack=ct1:NFCT,ip2str1:IP2STR,pg1:PGSQL
[ct1]
hash_enable=0
[pg1]
db="{db}"
host="{sock}"
port={port}
user="postgres"
table="ulog2_ct"
procedure="INSERT_OR_REPLACE_CT"
"""
SORT = ("orig_ip_protocol", "oob_family", "orig_ip_saddr_str", "orig_l4_sport",
        "orig_ip_daddr_str", "orig_l4_dport", "icmp_type", "ct_event")
CLOCKED = ("flow_start_sec", "flow_start_usec")


def _dbname(conninfo: str) -> str:
    return conninfo.split("dbname=")[1].split()[0]


def _daemons(pg, topo, tmp_path, theirs_db: str, ours_db: str) -> tuple:
    """ulogd and ulogpy, each logging flows into its own database (conninfos)."""
    procs = side_by_side(topo, tmp_path, {
        d: CONF.format(db=_dbname(db), sock=pg.sockdir, port=pg.port, loglevel=3)
        for d, db in (("ulogd", theirs_db), ("ulogpy", ours_db))})
    return procs["ulogd"], procs["ulogpy"]


def _flows(conninfo: str) -> list[dict]:
    cols = [r[0] for r in query(conninfo, "SELECT column_name FROM information_schema.columns"
                                " WHERE table_name = 'ulog2_ct' ORDER BY ordinal_position")]
    rows = query(conninfo, "SELECT * FROM ulog2_ct")
    out = [{c: (None if v is None else str(v)) for c, v in zip(cols, row, strict=True)}
           for row in rows]
    return sorted(out, key=lambda r: tuple(r[c] or "" for c in SORT))


@pytest.fixture
def topo():
    with flow_topology() as t:
        yield t


def test_same_rows_as_ulogd(pg, new_db, topo, tmp_path):
    theirs_db, ours_db = new_db(), new_db()
    ulogd, ulogpy = _daemons(pg, topo, tmp_path, theirs_db, ours_db)
    with ulogd, ulogpy:
        flows = topo.generate_flows() + topo.generate_flows(protos=("tcp", "udp"))
        udp_flows(topo, 20000, 10)
        expected = len(flows) + 10
        # INSERT_OR_REPLACE_CT matches ICMPv6 flows on their (NULL) ports: their DESTROY
        # finds no row and the NEW row stays open, in ulogd's database as in ours.
        icmp6 = sum(1 for f in flows if f.proto == "icmp" and f.family == 6)
        time.sleep(0.5)
        conntrack_flush(topo.fw)
        for db in (theirs_db, ours_db):
            wait_for(lambda db=db: query(db, "SELECT count(*) FROM ulog2_ct WHERE "
                                             "ct_event = 4")[0][0] >= expected - icmp6,
                     timeout=20, what=f"{expected - icmp6} completed flows in {db}")
        time.sleep(0.5)
        assert ulogpy.stop() == 0
    ours, theirs = _flows(ours_db), _flows(theirs_db)
    assert len(ours) == len(theirs) >= expected
    compared = 0
    for mine, ref in zip(ours, theirs, strict=True):
        for col in mine:
            if col == "_ct_id":
                continue
            if col in CLOCKED:
                if col == "flow_start_sec" and ref[col] is not None:
                    assert abs(int(mine[col]) - int(ref[col])) <= CLOCK_TOLERANCE_S
                continue
            assert mine[col] == ref[col], (col, mine, ref)
            compared += 1
    print(f"ulog2_ct: {len(ours)} rows, {compared} values equal to ulogd's")
    assert {r["ct_event"] for r in ours if r["orig_ip_protocol"] != "58"} == {"4"}
    assert any(r["reply_ip_daddr_str"] == topo.fw_wan_ip4 for r in ours)  # NAT address


PHASE = 40


def test_server_restart_loses_nothing(pg, new_db, topo, tmp_path):
    theirs_db, ours_db = new_db(), new_db()
    ulogd, ulogpy = _daemons(pg, topo, tmp_path, theirs_db, ours_db)
    with ulogd, ulogpy:
        udp_flows(topo, 30000, PHASE)
        wait_for(lambda: query(ours_db, "SELECT count(*) FROM ulog2_ct")[0][0] >= PHASE,
                 timeout=15, what="first phase stored")
        pg.stop()
        udp_flows(topo, 31000, PHASE)  # while the server is down
        time.sleep(1.0)
        pg.start()
        udp_flows(topo, 32000, PHASE)  # right after it is back
        time.sleep(1.0)
        conntrack_flush(topo.fw)
        total = 3 * PHASE

        def complete(db: str) -> int:
            return query(db, "SELECT count(*) FROM ulog2_ct WHERE ct_event = 4 AND "
                             "flow_start_sec IS NOT NULL AND flow_end_sec IS NOT NULL")[0][0]

        wait_for(lambda: complete(ours_db) >= total, timeout=30,
                 what=f"{total} flows with NEW and DESTROY in ulogpy's database")
        time.sleep(3.0)  # give ulogd the same chance (its reconnect wait is 2 s)
        assert ulogpy.stop() == 0
        ulogd.stop()
    ours_rows = query(ours_db, "SELECT count(*) FROM ulog2_ct")[0][0]
    theirs_rows = query(theirs_db, "SELECT count(*) FROM ulog2_ct")[0][0]
    theirs_complete = complete(theirs_db)
    ports = query(ours_db, "SELECT orig_l4_dport FROM ulog2_ct ORDER BY orig_l4_dport")
    assert [p[0] for p in ports] == [b + i for b in (30000, 31000, 32000)
                                     for i in range(PHASE)]
    assert ours_rows == complete(ours_db) == total
    print(f"\nrestart test, {total} flows (NEW + DESTROY each), PostgreSQL stopped for "
          f"~1 s during the second third:\n"
          f"  ulogpy: {ours_rows} flow rows, {complete(ours_db)} complete, "
          f"{total - complete(ours_db)} flows lost\n"
          f"  ulogd 2.0.8 (reconnect=2, no backlog): {theirs_rows} flow rows, "
          f"{theirs_complete} complete, {total - theirs_complete} flows lost or incomplete")
    log = ulogpy.log_text()
    assert "takes records again after" in log


PKT_CONF = """\
[global]
loglevel=3
stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,mac2str1:HWHDR,pg1:PGSQL
[log1]
group={group}
[pg1]
db="{db}"
host="{sock}"
port={port}
user="postgres"
table="ulog"
procedure="INSERT_PACKET_FULL"
"""
PKT_GROUPS = {"ulogd": 51, "ulogpy": 52}


def _ulog_rows(conninfo: str) -> list[tuple]:
    cols = [r[0] for r in query(conninfo, "SELECT column_name FROM information_schema.columns"
                                " WHERE table_name = 'ulog' ORDER BY ordinal_position")]
    keep = [c for c in cols if c not in ("_id", "oob_time_sec", "oob_time_usec")]
    rows = query(conninfo, f"SELECT {', '.join(c + '::text' for c in keep)} FROM ulog")
    return sorted(rows, key=lambda r: tuple("" if v is None else v for v in r))


def test_same_packet_rows_as_ulogd(pg, new_db, topo, tmp_path):
    topo.fw.nft(nflog_ruleset("ulogpy_pg", PKT_GROUPS.values(), related=True))
    dbs = {"ulogd": new_db(), "ulogpy": new_db()}
    procs = side_by_side(topo, tmp_path, {
        daemon: PKT_CONF.format(group=PKT_GROUPS[daemon], db=_dbname(conninfo),
                                sock=pg.sockdir, port=pg.port)
        for daemon, conninfo in dbs.items()})
    with procs["ulogd"], procs["ulogpy"]:
        packet_traffic(topo)
        wait_alike(lambda db: query(db, "SELECT count(*) FROM ulog2")[0][0], dbs.values())
        assert procs["ulogpy"].stop() == 0
    ours, theirs = _ulog_rows(dbs["ulogpy"]), _ulog_rows(dbs["ulogd"])
    only_ours = [r for r in ours if r not in theirs]
    only_theirs = [r for r in theirs if r not in ours]
    assert not only_ours and not only_theirs, (only_ours, only_theirs)
    assert ours == theirs
    print(f"ulog view: {len(ours)} packets, every column equal to ulogd's "
          "(but the reception times)")
    assert len(ours) >= 12
    protos = {r[8] for r in ours}  # ip_protocol
    assert {"6", "17", "1", "58"} <= protos
