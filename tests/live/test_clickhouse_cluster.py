"""CLICKHOUSE end to end: live NAT traffic into a real 3-server ClickHouse cluster.

The cluster (tests/clickhouse.py, started once for this module): ZooKeeper, shard 1 on
servers a and b (two replicas), shard 2 on server c.  `ulogpy db init --clickhouse
--cluster` creates the ReplicatedMergeTree tables and the Distributed table.  ulogpy
runs in the main namespace (where the cluster listens on loopback) and reads fw's
conntrack through `network_namespace_path`; lan connects to wan through fw's
masquerade.  Then:

* nat-lookup --source clickhouse://... names the inside host of every connection the
  wan server saw, first in rank, reading only the address's shard;
* faults mid-stream: a replica killed, the whole cluster down for a few seconds, and
  ulogpy restarted while rows wait in its spool; afterwards every flow's NEW and
  DESTROY are in the cluster exactly once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clickhouse import CLUSTER, DATABASE, ClickHouseCluster, clickhouse_skip_reason
from tests.netns import NatTopology, conntrack_reap, wait_until
from tests.ulogd_ref import ULOGPY, UlogdProcess, read_lines
from ulogpy.tools.natlookup.cli import main as nat_lookup

pytestmark = [pytest.mark.live]
PORT = 8080

CONF = """\
[global]
loglevel=5
stack=ct1:NFCT,ch1:CLICKHOUSE
[ct1]
hash_enable=0
event_mask=5
conntrack_acct=1
conntrack_timestamp=1
network_namespace_path="/run/netns/{fw}"
exact_start=1
[ch1]
url="{url}"
table="{table}"
cluster="{cluster}"
firewall="fw-test"
batch_rows=50
batch_delay_ms=200
reconnect_max=1
spool_dir="{d}/spool"
"""

#: wan: accept connections, record the peer (public ip:port) with the client's token.
SERVER = r"""
import json, socket, sys, threading, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(128)
print(json.dumps({"ready": True}), flush=True)
def handle(c, peer):
    with c:
        tok = c.makefile("rb").readline().decode().strip()
        print(json.dumps({"token": tok, "ip": peer[0], "port": peer[1], "t": time.time()}),
              flush=True)
        c.sendall(b"ok\n")
while True:
    c, peer = s.accept()
    threading.Thread(target=handle, args=(c, peer), daemon=True).start()
"""

#: lan: connections numbered FIRST..LAST, from source port 30000+n, PAUSE s apart.
CLIENT = r"""
import socket, sys, time
addr, port, first, last, pause = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:6])
for n in range(int(first), int(last)):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(5); s.bind(("0.0.0.0", 30000 + n)); s.connect((addr, port))
    s.sendall(f"t{n}\n".encode()); s.recv(10); s.close()
    time.sleep(pause)
"""


class HostNs:
    """The main namespace, as UlogdProcess expects a namespace."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def popen(self, cmd, **kw) -> subprocess.Popen:
        p = subprocess.Popen(list(map(str, cmd)), **kw)
        self.procs.append(p)
        return p


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClickHouseCluster]:
    reason = clickhouse_skip_reason()
    if reason:
        pytest.skip(reason)
    with ClickHouseCluster() as ch:
        yield ch


@pytest.fixture
def world(live_ok, cluster, tmp_path: Path):
    """NAT namespaces with a wan server, and a fresh table set in the cluster."""
    table = f"nat_{time.time_ns() % 10**9}"
    url = cluster.url(table=table)
    r = subprocess.run([ULOGPY, "db", "init", "--clickhouse", url, "--cluster", CLUSTER],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "ReplicatedMergeTree" not in r.stderr and "created distributed table" in r.stdout
    with NatTopology() as topo:
        out = tmp_path / "server.jsonl"
        with open(out, "w") as f:
            topo.wan.popen([sys.executable, "-c", SERVER, topo.wan_ip4, str(PORT)], stdout=f)
        wait_until(lambda: read_lines(out), 10, what="server ready")
        conf = CONF.format(fw=topo.fw.name, url=cluster.url(), table=table, cluster=CLUSTER,
                           d=tmp_path)
        yield topo, table, url, conf, out


def traffic(topo: NatTopology, first: int, last: int, pause: float = 0.02) -> None:
    topo.lan.run([sys.executable, "-c", CLIENT, topo.wan_ip4, str(PORT), str(first),
                  str(last), str(pause)], timeout=120)


def all_gone(topo: NatTopology) -> None:
    wait_until(lambda: not conntrack_reap(topo.fw), 20, what="fw's conntrack table empty")


def events(cluster: ClickHouseCluster, table: str, server: str = "a") -> list[tuple]:
    """(ct_id, event, count) of every conntrack event in the cluster."""
    return cluster.query(server, f"SELECT ct_id, event, count() FROM {DATABASE}.{table} "
                                 "GROUP BY ct_id, event")


def wait_rows(cluster: ClickHouseCluster, table: str, n: int, timeout: float = 30) -> None:
    wait_until(lambda: cluster.query("c", f"SELECT count() FROM {DATABASE}.{table}")[0][0]
               >= n, timeout, what=f"{n} rows in the cluster")


def in_sync(cluster: ClickHouseCluster, table: str) -> None:
    """Until both replicas of shard 1 hold the same rows (a restarted one catches up)."""
    local = f"SELECT count() FROM {DATABASE}.{table}_local"

    def same() -> bool:
        for name in "ab":
            cluster.query(name, f"SYSTEM SYNC REPLICA {DATABASE}.{table}_local")
        return cluster.query("a", local) == cluster.query("b", local)
    wait_until(same, 20, what="the replicas of shard 1 in sync")


def assert_exactly_once(cluster: ClickHouseCluster, table: str, flows: int) -> None:
    in_sync(cluster, table)  # a Distributed read may pick either replica
    found = events(cluster, table)
    assert all(c == 1 for _, _, c in found), [f for f in found if f[2] != 1]
    assert sorted(e for _, e, _ in found).count(1) == flows
    assert sorted(e for _, e, _ in found).count(4) == flows


def seen(path: Path) -> dict[str, dict]:
    return {r["token"]: r for r in map(json.loads, read_lines(path)) if "token" in r}


def test_lookup_from_the_cluster(world, cluster, capsys) -> None:
    topo, table, url, conf, out = world
    with UlogdProcess(HostNs(), conf, out.parent / "ulogpy", binary=ULOGPY):
        traffic(topo, 0, 12)
        all_gone(topo)
        wait_rows(cluster, table, 24)
    assert_exactly_once(cluster, table, 12)
    rows = cluster.query("a", f"SELECT DISTINCT firewall, start_exact FROM {DATABASE}.{table}"
                              " WHERE event = 4")
    assert rows == [("fw-test", 1)]  # DESTROY carries the kernel's start time
    # NEW too, with exact_start=1: the kernel's stamp of the event (kernel >= 6.14).
    assert cluster.query("a", f"SELECT DISTINCT start_exact FROM {DATABASE}.{table} WHERE "
                              "event = 1") == [(1,)]
    # The rows are spread over both shards by public address (one address here: one shard).
    shard_rows = [cluster.query(n, f"SELECT count() FROM {DATABASE}.{table}_local")[0][0]
                  for n in ("a", "c")]
    assert sorted(shard_rows) == [0, 24]
    records = seen(out)
    assert len(records) == 12
    for token, rec in records.items():
        code = nat_lookup(["--ip", rec["ip"], "--port", str(rec["port"]), "--at",
                           f"{rec['t']:.6f}", "--source", url, "--json"])
        text, err = capsys.readouterr()
        assert code == 0, (token, err)
        first = json.loads(text)[0]
        assert (first["inside_ip"], first["inside_port"]) == (
            topo.lan_ip4, 30000 + int(token[1:])), (token, first)
        assert first["held"] and first["proto"] == "tcp" and first["end"] is not None
        assert first["remote_ip"] == topo.wan_ip4 and first["remote_port"] == PORT
    # Nobody held this port.
    code = nat_lookup(["--ip", rec["ip"], "--port", "1", "--at", f"{rec['t']:.6f}",
                       "--source", url, "--json"])
    assert code == 1
    capsys.readouterr()

    # The same complaints as a batch (200 lines, one connection): the same answers.
    singles = {}
    for token, rec in records.items():
        nat_lookup(["--ip", rec["ip"], "--port", str(rec["port"]), "--at", f"{rec['t']:.6f}",
                    "--source", url, "--json"])
        singles[token] = json.loads(capsys.readouterr().out)
    order = [list(records)[i % len(records)] for i in range(200)]
    batch = out.parent / "complaints.csv"
    batch.write_text("".join(f"{records[t]['ip']},{records[t]['port']},{records[t]['t']:.6f}\n"
                             for t in order))
    began = time.monotonic()
    assert nat_lookup(["--batch", str(batch), "--source", url]) == 0
    rate = 200 / (time.monotonic() - began)
    answers = [json.loads(x)["matches"] for x in capsys.readouterr().out.splitlines()]
    assert answers == [singles[t] for t in order]
    with capsys.disabled():
        print(f"\nbatch over the cluster: {rate:.0f} lookups/s")


def test_lookup_reads_one_shard(world, cluster) -> None:
    from ulogpy.tools.natlookup.clickhouse import ClickHouseSource
    from ulogpy.tools.natlookup.flows import Query

    topo, table, url, conf, out = world
    with UlogdProcess(HostNs(), conf, out.parent / "ulogpy", binary=ULOGPY):
        traffic(topo, 0, 3)
        all_gone(topo)
        wait_rows(cluster, table, 6)
    rec = next(iter(seen(out).values()))
    src = ClickHouseSource.from_uri(url)
    holder = "a" if cluster.query("a", f"SELECT count() FROM {DATABASE}.{table}_local"
                                  )[0][0] else "c"
    other = "c" if holder == "a" else "a"
    cluster.stop_server(other)  # the other shard is away: the lookup does not need it
    try:
        flows = src.lookup(Query(ip=rec["ip"], port=rec["port"], at=rec["t"]))
        assert [f.inside_ip for f in flows] == [topo.lan_ip4]
        assert src.last_shard == (0 if holder == "a" else 1)
    finally:
        src.close()
        cluster.start_server(other)


def _queries_run(cluster: ClickHouseCluster) -> int:
    """Statements the three servers have run so far (their own `Query` event counter)."""
    return sum(cluster.query(n, "SELECT value FROM system.events WHERE event = 'Query'")[0][0]
               for n in "abc")


def test_grouped_batch_equals_single_lookups(world, cluster, capsys) -> None:
    """1,000 complaints (hits, misses, proto and remote filters, a bad line) as one
    --batch: line for line the answers of single lookups, in a few statements per
    shard and chunk of CHUNK complaints, not one per complaint."""
    import random

    from ulogpy.tools.natlookup.batch import CHUNK

    topo, table, url, conf, out = world
    with UlogdProcess(HostNs(), conf, out.parent / "ulogpy", binary=ULOGPY):
        traffic(topo, 0, 12)
        all_gone(topo)
        wait_rows(cluster, table, 24)
    in_sync(cluster, table)
    recs = list(seen(out).values())
    assert len({r["ip"] for r in recs}) == 1 and len(recs) == 12
    rng = random.Random(15)
    distinct = []
    for rec in recs:
        ip, port, t = rec["ip"], rec["port"], rec["t"]
        distinct += [f"{ip},{port},{t:.6f}", f"{ip},{port},{t - 30:.6f}",
                     f"{ip},{port + 1000},{t:.6f}", f"{ip},{port},{t:.6f},tcp",
                     f"{ip},{port},{t:.6f},udp", f"{ip},{port},{t:.6f},tcp,{topo.wan_ip4}",
                     f"{ip},{port},{t:.6f},,{topo.wan_ip4}:{PORT + 1}",
                     f"{topo.wan_ip4},{port},{t:.6f}"]  # an address no flow used
    singles = {}
    for line in distinct:
        ip, port, at, *rest = line.split(",")
        argv = ["--ip", ip, "--port", port, "--at", at, "--source", url, "--json"]
        if rest and rest[0]:
            argv += ["--proto", rest[0]]
        if len(rest) > 1:
            argv += ["--remote", rest[1]]
        nat_lookup(argv)
        singles[line] = json.loads(capsys.readouterr().out)
    hits = sum(bool(v) for v in singles.values())
    assert 3 * len(recs) <= hits < len(distinct)  # hits and misses, filters applied
    lines = [rng.choice(distinct) for _ in range(1000)]
    lines.insert(321, "1.2.3.4,99999,2026-01-01")
    batch = out.parent / "complaints.csv"
    batch.write_text("\n".join(lines) + "\n")
    before = _queries_run(cluster)
    assert nat_lookup(["--batch", str(batch), "--source", url]) == 2  # the bad line
    statements = _queries_run(cluster) - before - 3  # less _queries_run's own
    results = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert "not a port number" in results.pop(321)["error"]
    assert [r["matches"] for r in results] == [singles[x] for x in lines[:321] + lines[322:]]
    # Per worker: version, table, cluster; then per shard and chunk one keyed statement
    # (the complaints lie within a day) and one UNION ALL (those with proto or remote).
    chunks = -(-1001 // CHUNK)
    assert statements <= 4 * 3 + 2 * 2 * chunks, statements


def test_replica_killed_mid_stream(world, cluster) -> None:
    topo, table, url, conf, out = world
    with UlogdProcess(HostNs(), conf, out.parent / "ulogpy", binary=ULOGPY):
        traffic(topo, 0, 10)
        cluster.stop_server("a")  # SIGKILL
        try:
            traffic(topo, 10, 20)
            all_gone(topo)
            wait_until(lambda: cluster.query("b", f"SELECT count() FROM {DATABASE}.{table}"
                                             )[0][0] >= 40, 40, what="40 rows via b")
        finally:
            cluster.start_server("a")
    assert_exactly_once(cluster, table, 20)


def test_cluster_down_mid_stream(world, cluster) -> None:
    topo, table, url, conf, out = world
    with UlogdProcess(HostNs(), conf, out.parent / "ulogpy", binary=ULOGPY) as ul:
        traffic(topo, 0, 8)
        for name in "abc":
            cluster.stop_server(name)
        try:
            traffic(topo, 8, 16)
            time.sleep(3)
        finally:
            for name in "abc":
                cluster.start_server(name, wait=False)
            for name in "abc":
                cluster.wait_server(name)
        all_gone(topo)
        wait_rows(cluster, table, 32, timeout=60)
        assert ul.running()
        assert "keeping records" in ul.log_text()  # the outage was seen, and ridden out
    assert_exactly_once(cluster, table, 16)


def test_restart_with_rows_in_the_spool(world, cluster) -> None:
    topo, table, url, conf, out = world
    with UlogdProcess(HostNs(), conf, out.parent / "ulogpy", binary=ULOGPY):
        traffic(topo, 0, 5)
        wait_rows(cluster, table, 5)
        for name in "abc":
            cluster.stop_server(name)
        traffic(topo, 5, 12)
        all_gone(topo)
        time.sleep(1.0)
    spool = list((out.parent / "spool").rglob("*.spool"))
    assert spool and any(p.stat().st_size for p in spool)  # rows wait on disk
    for name in "abc":
        cluster.start_server(name, wait=False)
    for name in "abc":
        cluster.wait_server(name)
    with UlogdProcess(HostNs(), conf, out.parent / "ulogpy2", binary=ULOGPY):
        wait_rows(cluster, table, 24, timeout=60)
        time.sleep(0.5)
    assert_exactly_once(cluster, table, 12)


def test_a_failed_block_is_resent_identically(world, cluster) -> None:
    """The insert of a block went in but its answer was lost: the sink, told it failed,
    resends exactly that block first, and ReplicatedMergeTree keeps it once."""
    from ulogpy.core.plugin import Unavailable
    from ulogpy.db.clickhouse_schema import row_builder
    from ulogpy.db.clickhouse_sink import INSERT_SETTINGS, ClickHouseSink, make_client
    from ulogpy.db.clickhouse_uri import parse_clickhouse_uri

    topo, table, url, conf, out = world
    records = [{"ct.event": 1, "ct.id": n, "orig.ip.protocol": 6,
                "orig.ip.saddr": bytes([10, 0, 0, 2]), "orig.ip.daddr": bytes([10, 0, 1, 2]),
                "orig.l4.sport": 1000 + n, "orig.l4.dport": 80,
                "reply.ip.saddr": bytes([10, 0, 1, 2]), "reply.ip.daddr": bytes([10, 0, 9, 9]),
                "reply.l4.sport": 80, "reply.l4.dport": 1000 + n,
                "flow.start.sec": 1_700_000_000 + n, "flow.start.usec": 5} for n in range(15)]
    target = parse_clickhouse_uri(cluster.url())
    sink = ClickHouseSink(label="t", target=target, table=table, build=row_builder("fw-x"))
    sink.client = make_client(parse_clickhouse_uri("clickhouse://127.0.0.1:1/ulogpy"))
    with pytest.raises(Unavailable):
        sink.write(records[:10])  # the connection fails: this block of 10 must come again
    assert sink.pending == 10
    # ... but say it had gone in (its answer lost): the same 10 rows, as one block.
    direct = make_client(target)
    direct.execute(sink.statement, [sink.build(r) for r in records[:10]],
                   settings=INSERT_SETTINGS)
    direct.disconnect()
    sink.open()
    try:
        assert sink.write(records) == 15  # the 10 again (one block), then the 5 new
    finally:
        sink.close()
    assert cluster.query("a", f"SELECT count(), uniqExact(ct_id) FROM {DATABASE}.{table}") == [
        (15, 15)]

    # The same after a restart: the failed block's size outlives the process.
    state = str(out.parent / "ch1.clickhouse-block")
    more = [r | {"ct.id": r["ct.id"] + 100} for r in records]

    def sink_of() -> ClickHouseSink:
        return ClickHouseSink(label="t", target=target, table=table,
                              build=row_builder("fw-x"), state_file=state)
    first = sink_of()
    first.client = make_client(parse_clickhouse_uri("clickhouse://127.0.0.1:1/ulogpy"))
    with pytest.raises(Unavailable):
        first.write(more[:7])
    direct = make_client(target)
    direct.execute(first.statement, [first.build(r) for r in more[:7]],
                   settings=INSERT_SETTINGS)  # ... it had gone in
    direct.disconnect()
    second = sink_of()  # a new process
    assert second.pending == 7
    second.open()
    try:
        assert second.write(more) == 15
    finally:
        second.close()
    assert not os.path.exists(state)
    assert cluster.query("a", f"SELECT count(), uniqExact(ct_id) FROM {DATABASE}.{table}") == [
        (30, 30)]



def test_prune_drops_old_days_on_every_shard(world, cluster) -> None:
    """18.16 has no TTL: `ulogpy db prune --days N` drops the older day partitions on
    both shards (and, being replicated, on both replicas of shard 1)."""
    from ulogpy.db.clickhouse_schema import row_builder
    from ulogpy.db.clickhouse_sink import ClickHouseSink
    from ulogpy.db.clickhouse_uri import parse_clickhouse_uri

    topo, table, url, conf, out = world
    now = int(time.time())
    recs = [{"ct.event": 4, "ct.id": n, "orig.ip.protocol": 17,
             "orig.ip.saddr": bytes([10, 0, 0, n]), "orig.ip.daddr": bytes([10, 0, 1, 1]),
             "reply.ip.saddr": bytes([10, 0, 1, 1]), "reply.ip.daddr": bytes([10, 0, 9, n]),
             "flow.start.sec": now - days * 86400, "flow.end.sec": now - days * 86400 + 5}
            for n, days in enumerate((40, 40, 35, 35, 1, 1, 0, 0))]
    sink = ClickHouseSink(label="t", target=parse_clickhouse_uri(cluster.url()), table=table,
                          build=row_builder("fw-old"))
    sink.open()
    sink.write(recs)
    sink.close()
    in_sync(cluster, table)
    local = f"SELECT count() FROM {DATABASE}.{table}_local"
    before = [cluster.query(n, local)[0][0] for n in "abc"]
    assert before[0] == before[1] and before[0] + before[2] == 8 and 0 < before[2] < 8
    r = subprocess.run([ULOGPY, "db", "prune", "--clickhouse", url, "--cluster", CLUSTER,
                        "--days", "30"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("dropped partition") == 2  # the two old days
    in_sync(cluster, table)
    ages = f"SELECT DISTINCT ct_id FROM {DATABASE}.{table} ORDER BY ct_id"
    assert cluster.query("a", ages) == [(4,), (5,), (6,), (7,)]
    assert cluster.query("a", local) == cluster.query("b", local)


def test_one_server_without_cluster(cluster, capsys) -> None:
    """No cluster: one MergeTree table (18.16 dialect), written and looked up directly."""
    from ulogpy.db.clickhouse_schema import row_builder
    from ulogpy.db.clickhouse_sink import ClickHouseSink
    from ulogpy.db.clickhouse_uri import parse_clickhouse_uri

    url = cluster.url("c", database="single")
    r = subprocess.run([ULOGPY, "db", "init", "--clickhouse", url], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "created table single.ulog_nat (legacy schema)" in r.stdout
    again = subprocess.run([ULOGPY, "db", "init", "--clickhouse", url], capture_output=True,
                           text=True, timeout=60)
    assert again.stdout.strip().endswith("nothing to do")
    assert cluster.query("c", "SELECT engine FROM system.tables WHERE database = 'single'"
                         ) == [("MergeTree",)]
    now = int(time.time())
    base = {"orig.ip.protocol": 6, "ct.id": 77, "orig.ip.saddr": bytes.fromhex("fd00" + "00" * 13
                                                                               + "02"),
            "orig.ip.daddr": bytes.fromhex("fd00" + "00" * 13 + "09"), "orig.l4.sport": 5555,
            "orig.l4.dport": 443, "reply.ip.saddr": bytes.fromhex("fd00" + "00" * 13 + "09"),
            "reply.ip.daddr": bytes.fromhex("fd00" + "00" * 13 + "01"), "reply.l4.sport": 443,
            "reply.l4.dport": 6666}
    sink = ClickHouseSink(label="t", target=parse_clickhouse_uri(url), table="ulog_nat",
                          build=row_builder("fw6"))
    sink.open()
    sink.write([base | {"ct.event": 1, "flow.start.sec": now - 60, "flow.start.usec": 1},
                base | {"ct.event": 4, "flow.end.sec": now - 30, "flow.end.usec": 2}])
    sink.close()
    code = nat_lookup(["--ip", "fd00::1", "--port", "6666", "--at", str(now - 45), "--source",
                       url, "--json"])
    found = json.loads(capsys.readouterr().out)
    assert code == 0 and len(found) == 1
    assert (found[0]["inside_ip"], found[0]["inside_port"], found[0]["remote_ip"]) == (
        "fd00::2", 5555, "fd00::9")
    assert found[0]["source"] == f"{url}#fw6"
    # A DESTROY without a start (no conntrack_timestamp) is partitioned by its end.
    assert cluster.query("c", "SELECT event, start_exact, start = end FROM single.ulog_nat "
                              "ORDER BY event") == [(1, 0, 0), (4, 2, 1)]
