"""`ulogpy nat-lookup` end to end: real NAT, real conntrack, ulogpy's three histories.

Two lan hosts (10.O.1.2 and 10.O.3.2, two networks of the firewall) sit behind fw's
masquerade.  ulogpy on fw logs conntrack NEW and DESTROY events (kernel timestamps)
through IP2STR to JSON, to SQLITE3 (merge_flows), to PGSQL (ulogd's schema,
INSERT_OR_REPLACE_CT) and to MYSQL (MariaDB set up by `ulogpy db init --mysql`,
INSERT_OR_REPLACE_CT through `conntrack_events`).  A server on wan records, for every
connection, the public address and port it saw and when.  Then, for each of those,
nat-lookup against each history must name the inside host and port that made it, first
in rank.

Connections (all to the same wan server port):
* c1 lan1:S1, kept open during the lookups;
* c2 lan2:S1 at the same time: the firewall must rewrite its public port;
* c3 lan2:S2, c4 lan1:S2, c5 lan2:S2 one after the other: public port S2 is reused,
  c3 and c5 even share the whole tuple (two conntrack entries, two ct.ids);
* u1 lan1:S3, u2 lan2:S3 over UDP (the second rewritten; both still open);
* v1 lan1:S4, v2 lan2:S4 over IPv6 (NAT66 masquerade, the second rewritten).
A port nobody held, and S2 before any connection, exit 1.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.clickhouse import CLUSTER, ClickHouseCluster, clickhouse_skip_reason
from tests.mariadb import MariaDB, mariadb_skip_reason
from tests.netns import NatTopology, Netns, conntrack_reap, wait_until
from tests.pgcluster import PgCluster, pg_skip_reason, ulogd_schema_sql
from tests.ulogd_ref import ULOGPY, UlogdProcess, read_lines
from ulogpy.tools.natlookup.cli import main as nat_lookup
from ulogpy.tools.natlookup.sql import index_sql

pytestmark = [pytest.mark.live]

S1, S2, S3, S4 = 41001, 41002, 41003, 41004
TCP_PORT, UDP_PORT = 8080, 5353

CONF = """\
[global]
loglevel=5
stack=ct1:NFCT,ip2str1:IP2STR,json1:JSON
stack=ct1:NFCT,ip2str1:IP2STR,db1:SQLITE3
stack=ct1:NFCT,ip2str1:IP2STR,pg1:PGSQL
[ct1]
hash_enable=0
event_mask=5
conntrack_acct=1
conntrack_timestamp=1
[json1]
file="{d}/flows.json"
sync=1
[db1]
db="{d}/flows.db"
table="ulog2_ct"
merge_flows=1
create_table=1
spool_dir="{d}/spool"
[pg1]
db="nat"
user="postgres"
host="{pg_host}"
port={pg_port}
table="ulog2_ct"
procedure="INSERT_OR_REPLACE_CT"
spool_dir="{d}/spool"
"""
MYSQL_CONF = """\
stack=ct1:NFCT,ip2str1:IP2STR,my1:MYSQL
[my1]
db="nat"
host="localhost"
socket="{sock}"
user="root"
pass=""
table="conntrack_events"
procedure="INSERT_OR_REPLACE_CT"
spool_dir="{d}/spool"
"""

#: A second ulogpy, in the main namespace where the ClickHouse cluster listens, reads
#: fw's conntrack through network_namespace_path and writes the CLICKHOUSE history.
CLICKHOUSE_CONF = """\
[global]
loglevel=5
stack=ct1:NFCT,ch1:CLICKHOUSE
[ct1]
hash_enable=0
event_mask=5
conntrack_acct=1
conntrack_timestamp=1
exact_start=1
network_namespace_path="/run/netns/{fw}"
[ch1]
url="{url}"
cluster="{cluster}"
firewall="fw"
batch_delay_ms=100
spool_dir="{d}/ch-spool"
"""

#: wan: accept TCP (v4 and v6) and UDP; record the peer (the public ip:port) and time.
SERVER = r"""
import json, socket, sys, threading, time
addrs, tport, uport = sys.argv[1].split(","), int(sys.argv[2]), int(sys.argv[3])
lock = threading.Lock()
def emit(**kw):
    with lock:
        sys.stdout.write(json.dumps(kw) + "\n")
        sys.stdout.flush()
def handle(conn, peer, t):
    with conn:
        token = conn.makefile("rb").readline().decode().strip()
        emit(proto="tcp", token=token, ip=peer[0], port=peer[1], t=t)
        conn.sendall(b"ok\n")
        while conn.recv(4096):
            pass
def tcp(s):
    while True:
        conn, peer = s.accept()
        threading.Thread(target=handle, args=(conn, peer, time.time()), daemon=True).start()
def udp(s):
    while True:
        data, peer = s.recvfrom(2048)
        emit(proto="udp", token=data.decode().strip(), ip=peer[0], port=peer[1], t=time.time())
        s.sendto(b"ok\n", peer)
for a in addrs:
    s = socket.socket(socket.AF_INET6 if ":" in a else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a, tport))
    s.listen(64)
    threading.Thread(target=tcp, args=(s,), daemon=True).start()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind((addrs[0], uport))
threading.Thread(target=udp, args=(u,), daemon=True).start()
emit(ready=True)  # every socket is bound and listening
threading.Event().wait()
"""

#: lan: one connection from a fixed source port; closes first (FIN) unless told to hold.
CLIENT = r"""
import socket, sys
proto, addr, port, sport, token, hold = sys.argv[1:7]
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
any_addr = "::" if fam == socket.AF_INET6 else "0.0.0.0"
s = socket.socket(fam, socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.settimeout(5)
s.bind((any_addr, int(sport)))
if proto == "udp":
    s.sendto(token.encode() + b"\n", (addr, int(port)))
    s.recvfrom(100)
else:
    s.connect((addr, int(port)))
    s.sendall(token.encode() + b"\n")
    if s.recv(100) != b"ok\n":
        sys.exit("no ok")
print("held" if hold == "1" else "done", flush=True)
if hold == "1":
    sys.stdin.read()
s.close()
"""


@dataclass(frozen=True)
class Seen:
    """A connection as the wan server saw it, and who really made it."""

    token: str
    proto: str
    public_ip: str
    public_port: int
    t: float
    inside_ip: str
    inside_port: int


class TwoLans:
    """NatTopology plus a second lan host: ``lan2`` (10.O.3.2, fd00:O:3::2) on fw's
    ``lan1`` interface, masqueraded like the first."""

    def __init__(self, topo: NatTopology):
        self.topo = topo
        o = topo.octet
        self.lan2_ip4, self.lan2_ip6 = f"10.{o}.3.2", f"fd00:{o}:3::2"
        self.lan2 = Netns("lan2")
        fw = topo.fw
        fw.ip("link", "add", "lan1", "type", "veth", "peer", "name", "eth0", "netns",
              self.lan2.name)
        fw.ip("addr", "add", f"10.{o}.3.1/24", "dev", "lan1")
        fw.ip("-6", "addr", "add", f"fd00:{o}:3::1/64", "dev", "lan1", "nodad")
        fw.ip("link", "set", "lan1", "up")
        self.lan2.sysctls({"net.ipv6.conf.all.accept_dad": 0,
                           "net.ipv6.conf.default.accept_dad": 0})
        self.lan2.ip("addr", "add", f"{self.lan2_ip4}/24", "dev", "eth0")
        self.lan2.ip("-6", "addr", "add", f"{self.lan2_ip6}/64", "dev", "eth0", "nodad")
        self.lan2.ip("link", "set", "eth0", "up")
        self.lan2.ip("route", "add", "default", "via", f"10.{o}.3.1")
        self.lan2.ip("-6", "route", "add", "default", "via", f"fd00:{o}:3::1")
        fw.nft(f"add rule inet ulogpy_nat postrouting ip saddr 10.{o}.3.0/24 "
               f'oifname "{topo.WAN_IF}" masquerade\n'
               f"add rule inet ulogpy_nat postrouting ip6 saddr fd00:{o}:3::/64 "
               f'oifname "{topo.WAN_IF}" masquerade\n')
        # c5 reuses lan2's port S2 while c3's socket is still in TIME_WAIT there.
        for ns in (topo.lan, self.lan2):
            ns.sysctl("net.ipv4.tcp_tw_reuse", 1)
        wait_until(lambda: "LOWER_UP" in self.lan2.run(["ip", "-o", "link", "show", "eth0"])
                   .stdout, 5, what="lan2 link up")

    def delete(self) -> None:
        self.lan2.delete()


@pytest.fixture
def world(live_ok) -> Iterator[tuple[NatTopology, TwoLans, PgCluster]]:
    """The namespaces, and a PostgreSQL server with ulogd's schema and the lookup index
    in database `nat`; the server boots (initdb) while the namespaces are built."""
    reason = pg_skip_reason()
    if reason:
        pytest.skip(reason)
    booted: dict[str, object] = {}

    def boot() -> None:
        try:
            booted["pg"] = cluster = PgCluster()
            cluster.start()
            cluster.create_db("nat", ulogd_schema_sql())
            cluster.psql("nat", index_sql("ulog2_ct") + ";")
        except BaseException as exc:  # re-raised in the test's thread
            booted["error"] = exc

    thread = threading.Thread(target=boot)
    thread.start()
    try:
        with NatTopology() as topo:
            lans = TwoLans(topo)
            try:
                thread.join()
                if "error" in booted:
                    raise booted["error"]  # type: ignore[misc]
                yield topo, lans, booted["pg"]  # type: ignore[misc]
            finally:
                lans.delete()
    finally:
        thread.join()
        if "pg" in booted:
            booted["pg"].close()  # type: ignore[attr-defined]


@pytest.fixture
def mynat() -> Iterator[MariaDB | None]:
    """A MariaDB server with database `nat` set up by `ulogpy db init --mysql` (None, and
    no MYSQL history, where mariadb-server is missing)."""
    if mariadb_skip_reason():
        yield None
        return
    with MariaDB() as server:
        server.create_db("nat")
        subprocess.run([ULOGPY, "db", "init", "--mysql",
                        f"mysql://root@localhost/nat?socket={server.socket}"], check=True,
                       capture_output=True, timeout=60)
        yield server


@pytest.fixture
def chnat() -> Iterator[ClickHouseCluster | None]:
    """A 3-server ClickHouse cluster (2 shards, one with 2 replicas) with the tables of
    `ulogpy db init --clickhouse --cluster` (None, and no ClickHouse history, where
    clickhouse-server or zookeeper is missing)."""
    if clickhouse_skip_reason():
        yield None
        return
    with ClickHouseCluster() as cluster:
        subprocess.run([ULOGPY, "db", "init", "--clickhouse", cluster.url(), "--cluster",
                        CLUSTER], check=True, capture_output=True, timeout=60)
        yield cluster


class _MainNamespace:
    """The main namespace, as UlogdProcess expects a namespace."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def popen(self, cmd, **kw) -> subprocess.Popen:
        proc = subprocess.Popen([str(c) for c in cmd], **kw)
        self.procs.append(proc)
        return proc


def clickhouse_logger(ch: ClickHouseCluster | None, topo: NatTopology, d: Path):
    if ch is None:
        return contextlib.nullcontext()
    conf = CLICKHOUSE_CONF.format(fw=topo.fw.name, url=ch.url(), cluster=CLUSTER, d=d)
    return UlogdProcess(_MainNamespace(), conf, d / "ulogpy-ch", binary=ULOGPY)


def with_mysql(conf: str, d: Path, my: MariaDB | None) -> str:
    if my is None:
        return conf
    stacks, _, sections = conf.partition("[ct1]")
    extra_stack, _, section = MYSQL_CONF.format(sock=my.socket, d=d).partition("\n")
    return f"{stacks.rstrip()}\n{extra_stack}\n[ct1]{sections}{section}"


def connect(ns: Netns, proto: str, addr: str, port: int, sport: int, token: str,
            hold: bool = False) -> subprocess.Popen | None:
    argv = [sys.executable, "-c", CLIENT, proto, addr, port, sport, token, int(hold)]
    if not hold:
        ns.run(argv, timeout=15)
        return None
    proc = ns.popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def wait_gone(fw: Netns, public_port: int) -> None:
    """Until fw's conntrack table has no entry on that public port (reaping the expired
    ones), so the next connection can get the same port."""
    wait_until(lambda: not any(e.reply.get("dport") == str(public_port)
                               for e in conntrack_reap(fw)), 10,
               what=f"conntrack entries on port {public_port} gone")


def lookup(*args: str, capsys) -> tuple[int, list[dict], str]:
    code = nat_lookup([*args, "--json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out else []), err


def test_nat_lookup_end_to_end(world, mynat, chnat, tmp_path: Path, capsys) -> None:
    topo, lans, pg = world
    d = tmp_path
    conf = with_mysql(CONF.format(d=d, pg_host=pg.sockdir, pg_port=pg.port), d, mynat)
    wan4, wan6 = topo.wan_ip4, topo.wan_ip6
    lan1, lan2 = topo.lan, lans.lan2
    who = {  # token -> (namespace, inside address, source port)
        "c1": (lan1, topo.lan_ip4, S1), "c2": (lan2, lans.lan2_ip4, S1),
        "c3": (lan2, lans.lan2_ip4, S2), "c4": (lan1, topo.lan_ip4, S2),
        "c5": (lan2, lans.lan2_ip4, S2),
        "u1": (lan1, topo.lan_ip4, S3), "u2": (lan2, lans.lan2_ip4, S3),
        "v1": (lan1, topo.lan_ip6, S4), "v2": (lan2, lans.lan2_ip6, S4),
    }
    server_out = d / "server.jsonl"
    with open(server_out, "w") as out:
        topo.wan.popen([sys.executable, "-c", SERVER, f"{wan4},{wan6}", TCP_PORT, UDP_PORT],
                       stdout=out, stderr=subprocess.STDOUT)
    wait_until(lambda: read_lines(server_out), 10, what="server ready")
    began = time.time()

    with UlogdProcess(topo.fw, conf, d / "ulogpy", binary=ULOGPY) as ul, \
            clickhouse_logger(chnat, topo, d):
        def go(token: str, hold: bool = False) -> subprocess.Popen | None:
            ns, addr, sport = who[token]
            proto = "udp" if token.startswith("u") else "tcp"
            dst = wan6 if ":" in addr else wan4
            return connect(ns, proto, dst, UDP_PORT if proto == "udp" else TCP_PORT, sport,
                           token, hold)

        held = go("c1", hold=True)
        go("c2")
        go("c3")
        wait_gone(topo.fw, S2)
        go("c4")
        wait_gone(topo.fw, S2)
        go("c5")
        for token in ("u1", "u2", "v1", "v2"):
            go(token)

        seen = server_records(server_out, who, expected=len(who))
        assert seen["c1"].public_port == S1 and seen["c2"].public_port != S1  # rewritten
        assert seen["u2"].public_port != S3 and seen["v2"].public_port != S4
        assert seen["c3"].public_port == seen["c4"].public_port == seen["c5"].public_port

        # Every closed TCP flow's DESTROY in every history, then look up.
        closed = ["c2", "c3", "c4", "c5", "v1", "v2"]
        for token in closed:
            wait_gone(topo.fw, seen[token].public_port)
        sources = histories(d, pg, mynat)
        wait_for_destroys(d, pg, len(closed), ul, mynat)
        if chnat is not None:
            sources.append(chnat.url())
            wait_until(lambda: chnat.query("a", "SELECT count() FROM ulogpy.ulog_nat WHERE "
                                                "event = 4")[0][0] >= len(closed), 15,
                       what="the DESTROYs in the ClickHouse history")

        for token, rec in seen.items():
            for src in sources:
                code, found, err = lookup("--ip", rec.public_ip, "--port",
                                          str(rec.public_port), "--at", f"{rec.t:.6f}",
                                          "--source", src, capsys=capsys)
                assert code == 0, (token, src, err)
                first = found[0]
                assert (first["inside_ip"], first["inside_port"]) == (
                    rec.inside_ip, rec.inside_port), (token, src, found)
                assert first["held"] and first["proto"] == rec.proto, (token, src, found)
                assert (first["public_ip"], first["public_port"]) == (rec.public_ip,
                                                                     rec.public_port)
                remote = wan6 if ":" in rec.inside_ip else wan4
                assert first["remote_ip"] == remote
                open_now = token in ("c1", "u1", "u2")
                assert (first["end"] is None) == open_now, (token, src, first)

        # The reused port: the other users are listed as lower-ranked candidates.
        code, found, _ = lookup("--ip", seen["c4"].public_ip, "--port", str(S2), "--at",
                                f"{seen['c4'].t:.6f}", "--window", "30", "--source",
                                sources[0], capsys=capsys)
        assert [(f["inside_ip"], f["held"]) for f in found] == [
            (topo.lan_ip4, True), (lans.lan2_ip4, False), (lans.lan2_ip4, False)]

        # Through the configuration (all three histories at once): each flow once.
        code, found, err = lookup("-c", str(ul.conf_path), "--ip", seen["c1"].public_ip,
                                  "--port", str(S1), "--at", f"{time.time():.6f}",
                                  "--remote", f"{wan4}:{TCP_PORT}", capsys=capsys)
        assert code == 0, err
        assert [(f["inside_ip"], f["inside_port"], f["end"]) for f in found] == [
            (topo.lan_ip4, S1, None)]

        # Nobody held these: a port no connection used, and S2 before the first one.
        for src in sources:
            for port, at in ((S4 + 100, time.time()), (S2, began - 60)):
                code, found, _ = lookup("--ip", seen["c1"].public_ip, "--port", str(port),
                                        "--at", f"{at:.6f}", "--source", src, capsys=capsys)
                assert (code, found) == (1, []), (src, port)

        assert held is not None and held.stdin is not None
        held.stdin.close()
        held.wait(timeout=10)


def server_records(path: Path, who: dict, expected: int) -> dict[str, Seen]:
    def load() -> dict[str, Seen] | None:
        recs = [json.loads(x) for x in read_lines(path)]
        found = {}
        for r in recs:
            if "token" in r:
                _, inside, sport = who[r["token"]]
                found[r["token"]] = Seen(r["token"], r["proto"], r["ip"], r["port"], r["t"],
                                         inside, sport)
        return found if len(found) >= expected else None

    return wait_until(load, 10, what="the server saw every connection")  # type: ignore[return-value]


def histories(d: Path, pg: PgCluster, my: MariaDB | None = None) -> list[str]:
    mysql = [f"mysql://root@localhost/nat?socket={my.socket}"] if my else []
    return [f"json:{d}/flows.json", f"sqlite://{d}/flows.db",
            f"postgresql:///nat?host={pg.sockdir}&port={pg.port}&user=postgres", *mysql]


def wait_for_destroys(d: Path, pg: PgCluster, n: int, ul: UlogdProcess,
                      my: MariaDB | None = None) -> None:
    """ulogpy has written `n` DESTROYs to each history (the SQL outputs write in batches
    from their own threads)."""
    import sqlite3

    def json_count() -> int:
        return sum('"ct.event": 4' in x for x in read_lines(d / "flows.json"))

    def sqlite_count() -> int:
        try:
            db = sqlite3.connect(f"file:{d}/flows.db?mode=ro", uri=True)
            try:
                return db.execute("SELECT count(*) FROM ulog2_ct WHERE ct_event = 4"
                                  ).fetchone()[0]
            finally:
                db.close()
        except sqlite3.Error:
            return 0

    def pg_count() -> int:
        return int(pg.psql("nat", "SELECT count(*) FROM ulog2_ct WHERE ct_event = 4;"))

    def my_count() -> int:
        return my.query("nat", "SELECT count(*) FROM ulog2_ct WHERE state = 4")[0][0] \
            if my else n

    for name, count in (("JSON", json_count), ("SQLite", sqlite_count),
                        ("PostgreSQL", pg_count), ("MariaDB", my_count)):
        try:
            wait_until(lambda c=count: c() >= n, 15, interval=0.1,
                       what=f"{n} DESTROYs in the {name} history")
        except TimeoutError:
            raise AssertionError(f"{name}: {count()} DESTROYs of {n}\n--- ulogpy log:\n"
                                 f"{ul.log_text()}\n{ul.output_text()}") from None
