"""`ulogpy db init --mysql`: on an empty MariaDB database it creates ulogd's packet and
flow schema (format 6: ulog2, mac, hwhdr, the protocol tables, nfacct, ulog2_ct, the
`ulog` and `conntrack` views, the routines INSERT_PACKET_FULL calls, INSERT_CT) with an
unsigned `mac_protocol`, plus ulogpy's INSERT_OR_REPLACE_CT, `conntrack_events` and the
NAT-lookup indexes; on a database made from ulogd's mysql-ulogd2.sql it adds only what
is missing and repairs the signed `mac_protocol` (column and routine arguments) that
makes the server refuse IPv6 packets; a second run changes nothing.  Live: ulogd 2.0.8's
MYSQL and ulogpy's write the same NFLOG packets into databases made by `db init`, and
every table matches; a third database made from ulogd's file gets only the IPv4 ones.
The same for conntrack flows (INSERT_CT, all three alike) and NFACCT readings
(INSERT_NFACCT into `nfacct`, which ulogd's file lacks)."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.db.mysql_fixtures import PKT_CONF
from tests.db.sidebyside import nflog_ruleset
from tests.ulogd_ref import ULOGPY, UlogdProcess

TABLES = {"_format", "_extensions", "ulog2", "mac", "hwhdr", "tcp", "udp", "sctp", "icmp",
          "icmpv6", "nfacct", "ip_proto", "nufw", "ulog2_ct"}
VIEWS = {"ulog", "conntrack", "conntrack_events", "view_tcp", "view_udp", "view_icmp",
         "view_icmpv6", "view_nufw", "view_tcp_quad", "view_udp_quad"}
ROUTINES = {"INSERT_PACKET_FULL", "INSERT_IP_PACKET_FULL", "INSERT_IP_PACKET",
            "PACKET_ADD_TCP_FULL", "PACKET_ADD_TCP", "PACKET_ADD_UDP", "PACKET_ADD_SCTP",
            "PACKET_ADD_ICMP", "PACKET_ADD_ICMPV6", "PACKET_ADD_HARDWARE_HEADER",
            "INSERT_OR_SELECT_MAC", "BIN_TO_IPV6", "INSERT_CT", "INSERT_OR_REPLACE_CT",
            "ULOGPY_ADDR_BIN", "INSERT_NFACCT", "DELETE_PACKET", "DELETE_CT_FLOW",
            "COMPRESS_TABLES"}
#: What a database made from ulogd's own file lacks, in the order `db init` reports it.
ON_ULOGD = ["changed column mac.mac_protocol", "table nfacct", "index unique_acct",
            "replaced function INSERT_OR_SELECT_MAC", "replaced function INSERT_PACKET_FULL",
            "function INSERT_NFACCT", "view conntrack_events", "function ULOGPY_ADDR_BIN",
            "function INSERT_OR_REPLACE_CT", "index ulog2_ct_nat_lookup",
            "index ulog2_ct_flow_start", "index ulog2_ct_flow_end"]
SECRET = "init-pw'x"
# One IPv6 TCP packet from Ethernet, by `ulog` view column (the rest NULL): the view's
# columns after _id are INSERT_PACKET_FULL's arguments, in order.
V6_PACKET = {"oob_time_sec": 1700000000, "oob_time_usec": 0, "oob_hook": 2,
             "oob_prefix": "p", "oob_mark": 0, "oob_in": "lan0", "oob_out": "wan0",
             "oob_family": 10, "ip_saddr_bin": "fd00::1", "ip_daddr_bin": "fd00::2",
             "ip_protocol": 6, "ip6_payloadlen": 40, "ip6_priority": 0, "ip6_hoplimit": 64,
             "ip6_flowlabel": 0, "tcp_sport": 40000, "tcp_dport": 80, "tcp_seq": 1,
             "tcp_ackseq": 0, "tcp_window": 64240, "tcp_syn": 1, "raw_type": 1,
             "mac_str": "aa:bb", "mac_saddr_str": "aa:bb:cc:dd:ee:01",
             "mac_daddr_str": "aa:bb:cc:dd:ee:02", "oob_protocol": 0x86DD, "raw_label": 0}


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ULOGPY, "db", "init", *args], capture_output=True, text=True,
                          timeout=60)


def _done(proc: subprocess.CompletedProcess) -> list[str]:
    """What `db init` did: 'kind name' for a creation, else its own wording."""
    out = []
    for line in proc.stdout.splitlines():
        if ": created " in line:
            out.append(line.split(": created ", 1)[1])
        elif ": replaced " in line or ": changed " in line:
            out.append(line.split(": ", 1)[1])
    return out


def _uri(my, db: str, user: str = "root", password: str = "") -> str:
    from urllib.parse import quote

    cred = user + (":" + quote(password, safe="") if password else "")
    return f"mysql://{cred}@localhost/{db}?socket={my.socket}"


def _names(my, db: str, query: str) -> set[str]:
    return {r[0] for r in my.query(db, query, (db,))}


def _objects(my, db: str) -> dict[str, set[str]]:
    return {
        "tables": _names(my, db, "SELECT table_name FROM information_schema.tables WHERE "
                                 "table_schema = %s AND table_type = 'BASE TABLE'"),
        "views": _names(my, db, "SELECT table_name FROM information_schema.views WHERE "
                                "table_schema = %s"),
        "routines": _names(my, db, "SELECT routine_name FROM information_schema.routines "
                                   "WHERE routine_schema = %s"),
    }


def _insert_v6_packet(my, db: str) -> None:
    import ipaddress

    cols = [r[0] for r in my.query(
        db, "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
        "AND table_name = 'ulog' ORDER BY ordinal_position", (db,))][1:]
    args = [V6_PACKET.get(c) for c in cols]
    args = [ipaddress.ip_address(a).packed if c.endswith("_bin") and a else a
            for c, a in zip(cols, args, strict=True)]
    my.query(db, f"SELECT INSERT_PACKET_FULL({', '.join(['%s'] * len(args))})", args)


def _mac_protocol_type(my, db: str) -> str:
    return my.query(db, "SELECT column_type FROM information_schema.columns WHERE "
                        "table_schema = %s AND table_name = 'mac' AND "
                        "column_name = 'mac_protocol'", (db,))[0][0]


def test_empty_database_gets_the_whole_schema_once(my):
    my.create_db("init_empty")
    first = _run("--mysql", _uri(my, "init_empty"))
    assert first.returncode == 0, first.stderr
    made = _done(first)
    assert made[0] == "table _format" and len(made) == len(set(made))
    assert _objects(my, "init_empty") == {"tables": TABLES, "views": VIEWS,
                                          "routines": ROUTINES}
    assert _mac_protocol_type(my, "init_empty") == "smallint(5) unsigned"
    assert my.query("init_empty", "SELECT version FROM _format") == [(6,)]
    again = _run("--mysql", _uri(my, "init_empty"))
    assert again.returncode == 0 and _done(again) == []
    assert "nothing to do" in again.stdout
    index = my.query("init_empty", "SELECT column_name FROM information_schema.statistics "
                     "WHERE table_schema = 'init_empty' AND index_name = "
                     "'ulog2_ct_nat_lookup' ORDER BY seq_in_index")
    assert [r[0] for r in index] == ["reply_ip_daddr", "reply_l4_dport", "flow_start_sec"]
    # An IPv6 packet from Ethernet is stored, its Ethernet header once.
    for _ in range(2):
        _insert_v6_packet(my, "init_empty")
    assert my.query("init_empty", "SELECT mac_saddr_str, oob_protocol, tcp_dport, "
                    "INET6_NTOA(ip_saddr_bin) FROM ulog") == [
        ("aa:bb:cc:dd:ee:01", 34525, 80, "fd00::1")] * 2
    assert my.query("init_empty", "SELECT COUNT(*) FROM mac") == [(1,)]


def test_ulogd_database_gets_only_the_missing_objects(my, new_mydb):
    db, untouched = new_mydb(), new_mydb()
    with pytest.raises(Exception, match="Out of range value for column 'mac_protocol'"):
        _insert_v6_packet(my, untouched)  # ulogd's own schema refuses IPv6 from Ethernet
    before = my.query(db, "SELECT COUNT(*) FROM information_schema.columns WHERE "
                          "table_schema = %s", (db,))[0][0]
    proc = _run("--mysql", _uri(my, db))
    assert proc.returncode == 0, proc.stderr
    assert _done(proc) == ON_ULOGD
    after = my.query(db, "SELECT COUNT(*) FROM information_schema.columns WHERE "
                         "table_schema = %s", (db,))[0][0]
    assert after == before + 6 + 24  # nfacct's and conntrack_events' columns
    assert _mac_protocol_type(my, db) == "smallint(5) unsigned"
    _insert_v6_packet(my, db)
    assert my.query(db, "SELECT mac_protocol FROM mac") == [(34525,)]
    again = _run("--mysql", _uri(my, db))
    assert again.returncode == 0 and _done(again) == []
    args = ("2, %s, %s, 17, 1000, 53, {b}, 1, %s, %s, 17, 53, 1000, {b}, 1, NULL, NULL, 0, "
            "{s}, 0, {e}, 0, {ev}")
    addrs = ("10.0.0.1", "10.0.0.2", "10.0.0.2", "10.0.0.1")
    my.query(db, "SELECT INSERT_OR_REPLACE_CT(" + args.format(b=0, s=100, e="NULL", ev=1)
             + ")", addrs)
    my.query(db, "SELECT INSERT_OR_REPLACE_CT(" + args.format(b=99, s="NULL", e=105, ev=4)
             + ")", addrs)
    rows = my.query(db, "SELECT flow_start_sec, flow_end_sec, orig_raw_pktlen, ct_event, "
                        "orig_ip_saddr_str, reply_ip_saddr_str FROM conntrack_events")
    assert rows == [(100, 105, 99, 4, "10.0.0.1", "10.0.0.2")]
    # Stored in ulogd's binary(16) layout, IPv4-mapped, as IP2BIN writes it.
    mapped = bytes(10) + b"\xff\xff" + bytes([10, 0, 0, 1])
    assert my.query(db, "SELECT orig_ip_saddr FROM ulog2_ct") == [(mapped,)]


def test_unreachable_server_and_password_never_shown(my):
    my.add_password_user("initpw", SECRET)
    proc = _run("--mysql", _uri(my, "nosuchdb", "initpw", SECRET + "bad"))
    assert proc.returncode == 1
    assert "Access denied" in proc.stderr and "Traceback" not in proc.stderr
    assert SECRET not in proc.stderr and SECRET not in proc.stdout
    bad = _run("--mysql", "mysql://root@localhost/")
    assert bad.returncode == 1 and "names no database" in bad.stderr


def test_nat_lookup_reads_the_mysql_history(my, tmp_path, capsys):
    """What INSERT_OR_REPLACE_CT stored is found by public address and port, through a
    --source URI and through a configuration's MYSQL output."""
    import json

    from ulogpy.tools.natlookup.cli import main as nat_lookup

    my.create_db("nat_src")
    assert _run("--mysql", _uri(my, "nat_src")).returncode == 0
    call = ("SELECT INSERT_OR_REPLACE_CT(2, '10.1.1.2', '10.2.2.2', 6, 41000, 80, {b}, 1, "
            "'10.2.2.2', '10.9.9.9', 6, 80, 40000, {b}, 1, NULL, NULL, 0, {s}, 0, {e}, 0, "
            "{ev})")
    my.query("nat_src", call.format(b=0, s=1700000000, e="NULL", ev=1))
    my.query("nat_src", call.format(b=60, s="NULL", e=1700000030, ev=4))
    args = ["--ip", "10.9.9.9", "--port", "40000", "--at", "1700000010", "--json"]
    assert nat_lookup([*args, "--source", _uri(my, "nat_src")]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [(f["inside_ip"], f["inside_port"], f["held"]) for f in found] == [
        ("10.1.1.2", 41000, True)]
    assert found[0]["end"] is not None
    conf = tmp_path / "ulogd.conf"
    conf.write_text("[global]\nstack=ct1:NFCT,ip2str1:IP2STR,my1:MYSQL\n[ct1]\n[my1]\n"
                    f'db="nat_src"\nhost="localhost"\nsocket="{my.socket}"\nuser="root"\n'
                    'pass=""\ntable="conntrack_events"\nprocedure="INSERT_OR_REPLACE_CT"\n')
    assert nat_lookup([*args, "-c", str(conf)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert [(f["inside_ip"], f["inside_port"]) for f in again] == [("10.1.1.2", 41000)]
    assert nat_lookup(["--ip", "10.9.9.9", "--port", "40001", "--at", "1700000010",
                       "--source", _uri(my, "nat_src")]) == 1
    capsys.readouterr()
#: daemon writing, NFLOG group, its database made by: db init (True) or ulogd's file.
WRITERS = {"ulogd": ("/usr/sbin/ulogd", 61, True), "ulogpy": (ULOGPY, 62, True),
           "ulogd_file": ("/usr/sbin/ulogd", 63, False)}
PKT_TABLES = ("ulog2", "tcp", "udp", "icmp", "icmpv6", "sctp", "hwhdr", "mac")
SURROGATE = ("_id", "_tcp_id", "_udp_id", "_icmp_id", "_icmpv6_id", "_sctp_id", "_hw_id",
             "mac_id", "_mac_id", "oob_time_sec", "oob_time_usec", "timestamp")


@pytest.mark.live
@pytest.mark.ulogd
def test_ulogd_and_ulogpy_write_the_same_packets(my, new_mydb, tmp_path, monkeypatch):
    import time

    from tests.db.helpers import wait_for
    from tests.db.mysql_fixtures import my_table_rows
    from tests.netns import NatTopology, icmp_echo, tcp_echo, udp_echo

    monkeypatch.setenv("MYSQL_UNIX_PORT", str(my.socket))
    dbs = {}
    for name, (_, _, init) in WRITERS.items():
        dbs[name] = new_mydb(schema=not init)
        if init:
            assert _run("--mysql", _uri(my, dbs[name])).returncode == 0
    with NatTopology() as topo:
        topo.fw.nft(nflog_ruleset("ulogpy_myinit", (g for _, g, _ in WRITERS.values())))
        procs = {}
        for name, (binary, group, _) in WRITERS.items():
            conf = PKT_CONF.format(group=group, db=dbs[name])
            if binary == ULOGPY:
                conf += f'spool_dir="{tmp_path / "spool"}"\n'
            procs[name] = UlogdProcess(topo.fw, conf, tmp_path / name, binary=binary)
        with procs["ulogd"], procs["ulogpy"], procs["ulogd_file"]:
            for fam in (4, 6):
                tcp_echo(topo.lan, topo.wan, topo.wan_ip(fam))
                udp_echo(topo.lan, topo.wan, topo.wan_ip(fam))
                icmp_echo(topo.lan, topo.wan_ip(fam))
                tcp_echo(topo.fw, topo.wan, topo.wan_ip(fam))
            time.sleep(1.5)  # each NFLOG group's batch leaves on the kernel's 1 s timer
            history: list[tuple[int, ...]] = []

            def settled() -> bool:
                history.append(tuple(my.query(db, "SELECT COUNT(*) FROM ulog2")[0][0]
                                     for db in dbs.values()))
                last = history[-3:]
                return len(last) == 3 and len(set(last)) == 1 and last[0][0] > 0 \
                    and last[0][0] == last[0][1]

            wait_for(settled, timeout=20, interval=0.5, what="the databases settled")
            assert procs["ulogpy"].stop() == 0
    for table in PKT_TABLES:
        ours = my_table_rows(my, dbs["ulogpy"], table, drop=SURROGATE)
        theirs = my_table_rows(my, dbs["ulogd"], table, drop=SURROGATE)
        assert ours == theirs, table
    view = {d: my_table_rows(my, db, "ulog", drop=SURROGATE) for d, db in dbs.items()}
    assert view["ulogpy"] == view["ulogd"]
    families = {r[0]: r[1] for r in my.query(
        dbs["ulogpy"], "SELECT oob_family, COUNT(*) FROM ulog2 GROUP BY 1")}
    assert families.get(2, 0) >= 4 and families.get(10, 0) >= 4, families
    assert {r[0] for r in my.query(dbs["ulogpy"], "SELECT DISTINCT ip_protocol FROM ulog2")} \
        >= {6, 17, 1, 58}
    assert (0x86DD,) in my.query(dbs["ulogd"], "SELECT mac_protocol FROM mac")
    # ulogd's own schema keeps only the IPv4 packets: the same rows as the others'.
    family = [r[0] for r in my.query(
        dbs["ulogd"], "SELECT column_name FROM information_schema.columns WHERE "
        "table_schema = %s AND table_name = 'ulog' ORDER BY ordinal_position",
        (dbs["ulogd"],)) if r[0] not in SURROGATE].index("oob_family")
    ipv4 = [r for r in view["ulogd"] if r[family] == "2"]
    assert view["ulogd_file"] == ipv4 and len(ipv4) < len(view["ulogd"])
    quads = {d: my_table_rows(my, db, "view_tcp_quad", drop=SURROGATE)
             for d, db in dbs.items()}
    assert quads["ulogpy"] == quads["ulogd"]
    assert quads["ulogd_file"] == [q for q in quads["ulogd"] if q[0].startswith("::ffff:")]
    for name in ("ulogd", "ulogpy"):
        again = _run("--mysql", _uri(my, dbs[name]))
        assert again.returncode == 0 and _done(again) == []
    print(f"ulog view: {len(view['ulogpy'])} packets ({families[10]} IPv6), every table "
          f"equal to ulogd's; ulogd's own schema kept {len(ipv4)} (IPv4 only)")


ACCT_CONF = """\
[global]
loglevel=3
stack=acct1:NFACCT,my1:MYSQL
[acct1]
pollinterval=1
zerocounter=0
timestamp=1
[my1]
db="{db}"
host="localhost"
user="root"
pass=""
table="nfacct"
procedure="INSERT_NFACCT"
"""
#: accounting object -> (iptables protocol, IPv4 echoes or UDP datagrams to send)
ACCT = {"icmp4": ("icmp", 3), "udp4": ("udp", 4), "idle": (None, 0)}
UDP_SEND = ("import socket, sys\n"
            "rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "rx.bind(('127.0.0.1', 0))\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "for _ in range(int(sys.argv[1])):\n"
            "    s.sendto(b'x' * 100, rx.getsockname()); rx.recv(200)\n")


@pytest.mark.live
@pytest.mark.ulogd
def test_nfacct_readings_through_insert_nfacct(my, tmp_path, monkeypatch):
    """NFACCT into the `nfacct` table that ulogd's MySQL file lacks: both daemons poll the
    same cumulative counters; their last readings are the packets sent."""
    import sys

    from tests.db.helpers import wait_for
    from tests.netns import Netns

    monkeypatch.setenv("MYSQL_UNIX_PORT", str(my.socket))
    dbs = {"ulogd": "acct_ulogd", "ulogpy": "acct_ulogpy"}
    for db in dbs.values():
        my.create_db(db)
        assert _run("--mysql", _uri(my, db)).returncode == 0
    want = {"icmp4": (6, 6 * (20 + 8 + 56)), "udp4": (4, 4 * (20 + 8 + 100)), "idle": (0, 0)}
    last = "SELECT sum_name, MAX(sum_pkts), MAX(sum_bytes) FROM nfacct GROUP BY sum_name"
    with Netns("myacct") as ns:
        ns.run(["ip", "link", "set", "lo", "up"])
        for name, (proto, _) in ACCT.items():
            ns.run(["nfacct", "add", name])
            if proto:
                ns.run(["iptables", "-A", "OUTPUT", "-p", proto, "-m", "nfacct",
                        "--nfacct-name", name])
        procs = {d: UlogdProcess(ns, ACCT_CONF.format(db=db) + (
                     f'spool_dir="{tmp_path / "spool"}"\n' if d == "ulogpy" else ""),
                     tmp_path / d, binary=ULOGPY if d == "ulogpy" else "/usr/sbin/ulogd")
                 for d, db in dbs.items()}
        with procs["ulogd"], procs["ulogpy"]:
            ns.run(["ping", "-q", "-c", "3", "-i", "0.01", "-s", "56", "127.0.0.1"])
            ns.run([sys.executable, "-c", UDP_SEND, str(ACCT["udp4"][1])])
            for db in dbs.values():
                wait_for(lambda db=db: {r[0]: (int(r[1]), int(r[2]))
                                        for r in my.query(db, last)} == want,
                         timeout=15, interval=0.5, what=f"the totals in {db}")
            assert procs["ulogpy"].stop() == 0
    rows = {d: my.query(db, last) for d, db in dbs.items()}
    assert sorted(rows["ulogpy"]) == sorted(rows["ulogd"])
    stamps = my.query(dbs["ulogpy"], "SELECT MIN(oob_time_sec), COUNT(*) FROM nfacct")[0]
    assert abs(stamps[0] - time.time()) < 60 and stamps[1] >= len(ACCT)


FLOW_CONF = """\
[global]
loglevel=3
stack=ct1:NFCT,ip2bin1:IP2BIN,my1:MYSQL
[ct1]
hash_enable=0
[my1]
db="{db}"
host="localhost"
user="root"
pass=""
table="conntrack"
procedure="INSERT_CT"
"""
CLOCKED = ("_ct_id", "flow_start_sec", "flow_start_usec")


@pytest.mark.live
@pytest.mark.ulogd
def test_ulogd_and_ulogpy_write_the_same_flows(my, new_mydb, tmp_path, monkeypatch):
    """The flow side of a `db init` database: ulogd's INSERT_CT through the `conntrack`
    view, from both daemons, the same rows as in a database made from ulogd's file."""
    import time

    from tests.db.helpers import wait_for
    from tests.db.mysql_fixtures import my_table_rows
    from tests.netns import NatTopology, conntrack_flush

    monkeypatch.setenv("MYSQL_UNIX_PORT", str(my.socket))
    writers = {"ulogd": ("/usr/sbin/ulogd", True), "ulogpy": (ULOGPY, True),
               "ulogd_file": ("/usr/sbin/ulogd", False)}
    dbs = {}
    for name, (_, init) in writers.items():
        dbs[name] = new_mydb(schema=not init)
        if init:
            assert _run("--mysql", _uri(my, dbs[name])).returncode == 0
    sysctls = {"net.netfilter.nf_conntrack_acct": 1, "net.netfilter.nf_conntrack_timestamp": 1}
    with NatTopology(fw_sysctls=sysctls) as topo:
        procs = {}
        for name, (binary, _) in writers.items():
            conf = FLOW_CONF.format(db=dbs[name])
            if binary == ULOGPY:
                conf += f'spool_dir="{tmp_path / "spool"}"\n'
            procs[name] = UlogdProcess(topo.fw, conf, tmp_path / name, binary=binary)
        with procs["ulogd"], procs["ulogpy"], procs["ulogd_file"]:
            flows = topo.generate_flows()
            time.sleep(0.5)
            conntrack_flush(topo.fw)
            expected = 2 * len(flows)  # a NEW row and a DESTROY row each
            for db in dbs.values():
                wait_for(lambda db=db: my.query(db, "SELECT COUNT(*) FROM ulog2_ct")[0][0]
                         >= expected, timeout=20, interval=0.2, what=f"{expected} rows in {db}")
            time.sleep(0.5)
            assert procs["ulogpy"].stop() == 0
    rows = {d: my_table_rows(my, db, "ulog2_ct", drop=CLOCKED) for d, db in dbs.items()}
    assert len(rows["ulogd"]) >= expected
    assert rows["ulogpy"] == rows["ulogd"] == rows["ulogd_file"]
    families = {r[0] for r in my.query(dbs["ulogpy"], "SELECT DISTINCT oob_family FROM ulog2_ct")}
    assert families == {2, 10}
    # Unlike ulogd's, the `conntrack` view shows what INSERT_CT wrote.
    assert my.query(dbs["ulogpy"], "SELECT COUNT(*) FROM conntrack")[0][0] == len(rows["ulogd"])
