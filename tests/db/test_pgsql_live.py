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
from tests.netns import NatTopology, conntrack_flush
from tests.ulogd_ref import ULOGPY, UlogdProcess

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
OURS_EXTRA = 'spool_dir="{spool}"\nreconnect=1\nreconnect_max=2\n'
SORT = ("orig_ip_protocol", "oob_family", "orig_ip_saddr_str", "orig_l4_sport",
        "orig_ip_daddr_str", "orig_l4_dport", "icmp_type", "ct_event")
CLOCKED = ("flow_start_sec", "flow_start_usec")


def _conf(pg, db: str, tmp, ours: bool) -> str:
    text = CONF.format(db=db, sock=pg.sockdir, port=pg.port, loglevel=3)
    return text + (OURS_EXTRA.format(spool=tmp / "spool") if ours else "")


def _flows(conninfo: str) -> list[dict]:
    cols = [r[0] for r in query(conninfo, "SELECT column_name FROM information_schema.columns"
                                " WHERE table_name = 'ulog2_ct' ORDER BY ordinal_position")]
    rows = query(conninfo, "SELECT * FROM ulog2_ct")
    out = [{c: (None if v is None else str(v)) for c, v in zip(cols, row, strict=True)}
           for row in rows]
    return sorted(out, key=lambda r: tuple(r[c] or "" for c in SORT))


def _udp_burst(topo: NatTopology, first_port: int, n: int) -> None:
    """`n` UDP flows lan -> wan (one datagram each, distinct destination ports)."""
    code = ("import socket,sys\n"
            "for p in range(int(sys.argv[2]), int(sys.argv[2]) + int(sys.argv[3])):\n"
            "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "    s.sendto(b'x', (sys.argv[1], p)); s.close()\n")
    topo.lan.python(["-c", code, topo.wan_ip4, str(first_port), str(n)])


@pytest.fixture
def topo():
    with NatTopology(fw_sysctls={"net.netfilter.nf_conntrack_acct": 1,
                                 "net.netfilter.nf_conntrack_timestamp": 1}) as t:
        yield t


def test_same_rows_as_ulogd(pg, new_db, topo, tmp_path):
    theirs_db, ours_db = new_db(), new_db()
    theirs_name = theirs_db.split("dbname=")[1].split()[0]
    ours_name = ours_db.split("dbname=")[1].split()[0]
    ulogd = UlogdProcess(topo.fw, _conf(pg, theirs_name, tmp_path, False), tmp_path / "ulogd")
    ulogpy = UlogdProcess(topo.fw, _conf(pg, ours_name, tmp_path, True), tmp_path / "ulogpy",
                          binary=ULOGPY)
    with ulogd, ulogpy:
        flows = topo.generate_flows() + topo.generate_flows(protos=("tcp", "udp"))
        _udp_burst(topo, 20000, 10)
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
    theirs_name = theirs_db.split("dbname=")[1].split()[0]
    ours_name = ours_db.split("dbname=")[1].split()[0]
    ulogd = UlogdProcess(topo.fw, _conf(pg, theirs_name, tmp_path, False), tmp_path / "ulogd")
    ulogpy = UlogdProcess(topo.fw, _conf(pg, ours_name, tmp_path, True), tmp_path / "ulogpy",
                          binary=ULOGPY)
    with ulogd, ulogpy:
        _udp_burst(topo, 30000, PHASE)
        wait_for(lambda: query(ours_db, "SELECT count(*) FROM ulog2_ct")[0][0] >= PHASE,
                 timeout=15, what="first phase stored")
        pg.stop()
        _udp_burst(topo, 31000, PHASE)  # while the server is down
        time.sleep(1.0)
        pg.start()
        _udp_burst(topo, 32000, PHASE)  # right after it is back
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


def _pkt_ruleset() -> str:
    def log(prefix: str) -> str:
        return " ".join(f'log prefix "{prefix}" group {g}' for g in PKT_GROUPS.values())

    return ("table inet ulogpy_pg {\n"
            "  chain fwd_log {\n"
            "    type filter hook forward priority 0; policy accept;\n"
            f"    ct state new {log('FWD new: ')}\n"
            f"    ct state related {log('FWD rel ')}\n"
            "  }\n"
            "  chain out_log {\n"
            "    type filter hook output priority 0; policy accept;\n"
            f"    meta l4proto {{ tcp, udp, icmp }} {log('OUT ')}\n"
            f"    icmpv6 type {{ echo-request, echo-reply }} {log('OUT6 ')}\n"
            "  }\n"
            "}\n")


def _ulog_rows(conninfo: str) -> list[tuple]:
    cols = [r[0] for r in query(conninfo, "SELECT column_name FROM information_schema.columns"
                                " WHERE table_name = 'ulog' ORDER BY ordinal_position")]
    keep = [c for c in cols if c not in ("_id", "oob_time_sec", "oob_time_usec")]
    rows = query(conninfo, f"SELECT {', '.join(c + '::text' for c in keep)} FROM ulog")
    return sorted(rows, key=lambda r: tuple("" if v is None else v for v in r))


def test_same_packet_rows_as_ulogd(pg, new_db, topo, tmp_path):
    from tests.netns import icmp_echo, tcp_echo, udp_echo

    topo.fw.nft(_pkt_ruleset())
    dbs = {"ulogd": new_db(), "ulogpy": new_db()}
    procs = {}
    for daemon, conninfo in dbs.items():
        text = PKT_CONF.format(group=PKT_GROUPS[daemon], db=conninfo.split("dbname=")[1]
                               .split()[0], sock=pg.sockdir, port=pg.port)
        if daemon == "ulogpy":
            text += OURS_EXTRA.format(spool=tmp_path / "spool")
        procs[daemon] = UlogdProcess(topo.fw, text, tmp_path / daemon,
                                     binary=ULOGPY if daemon == "ulogpy" else
                                     "/usr/sbin/ulogd")
    with procs["ulogd"], procs["ulogpy"]:
        for fam in (4, 6):
            tcp_echo(topo.lan, topo.wan, topo.wan_ip(fam))
            udp_echo(topo.lan, topo.wan, topo.wan_ip(fam))
            icmp_echo(topo.lan, topo.wan_ip(fam))
            tcp_echo(topo.fw, topo.wan, topo.wan_ip(fam))
        # The kernel hands each NFLOG group's batch over on its own 1 s timer: wait past
        # it, then until both databases are alike and stay so.
        time.sleep(1.5)
        history: list[tuple[int, ...]] = []

        def settled() -> bool:
            history.append(tuple(query(db, "SELECT count(*) FROM ulog2")[0][0]
                                 for db in dbs.values()))
            last = history[-3:]
            return len(last) == 3 and len(set(last)) == 1 and len(set(last[0])) == 1 \
                and last[0][0] > 0

        wait_for(settled, timeout=20, interval=0.5, what="both databases alike")
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
