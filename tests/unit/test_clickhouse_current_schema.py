"""The current-server schema variant and its lookup, on a current ClickHouse engine.

Debian's server is 18.16 (the LEGACY variant, tested live in
tests/live/test_clickhouse_cluster.py); production servers are current LTS releases.
PyPI's `chdb` embeds a current engine in-process: the CURRENT DDL (IPv6 columns,
LowCardinality, codecs, TTL) must create the table there, the cluster DDL (ON CLUSTER,
ReplicatedMergeTree, Distributed) must parse, and the lookup query, with its parameters
substituted by clickhouse-driver as on a real connection, must find the right flows.
"""

from __future__ import annotations

import json

import pytest

from ulogpy.db.clickhouse_schema import (
    CURRENT,
    LEGACY,
    address_bytes,
    create_statements,
    shard_key,
    variant_for,
)
from ulogpy.tools.natlookup.clickhouse import lookup_sql, rows_to_flows
from ulogpy.tools.natlookup.flows import Query, rank

chdb_session = pytest.importorskip("chdb.session", reason="PyPI chdb (a current engine)")

T0 = 1_790_000_000
PUB = "198.51.100.7"
KEY = shard_key(address_bytes(PUB))  # the address's low 32 bits


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    s = chdb_session.Session(str(tmp_path_factory.mktemp("chdb")))
    yield s
    s.close()


def run(s, sql: str) -> list[list]:
    out = s.query(sql, "JSONCompact").data()
    return json.loads(out)["data"] if out.strip() else []


def substitute(sql: str, params: dict) -> str:
    from clickhouse_driver import Client

    client = Client("localhost")  # never connects: only its parameter substitution
    return client.substitute_params(sql, params, client.connection.context)


def test_variant_by_version(engine) -> None:
    version = run(engine, "SELECT version()")[0][0]
    assert variant_for(tuple(int(p) for p in version.split(".")[:2])) == CURRENT
    assert variant_for((18, 16, 1)) == LEGACY and variant_for((20, 3)) == CURRENT


def test_current_ddl_and_lookup(engine) -> None:
    for _, sql in create_statements("nat", "ulog_nat", CURRENT, retention_days=90):
        run(engine, sql)
    types = dict(run(engine, "SELECT name, type FROM system.columns WHERE database = 'nat' "
                             "AND table = 'ulog_nat'"))
    assert types["reply_daddr"] == "IPv6" and types["firewall"] == "LowCardinality(String)"
    ddl = run(engine, "SHOW CREATE TABLE nat.ulog_nat")[0][0]
    assert "TTL start + toIntervalDay(90)" in ddl and "CODEC(Delta(4), ZSTD(1))" in ddl
    assert "ORDER BY (reply_daddr, reply_dport, start)" in ddl

    def row(event, ct_id, inside, port, start, end=0, exact=1):
        return (f"('fw1', {event}, {ct_id}, 6, toIPv6('::ffff:{inside}'), "
                f"toIPv6('::ffff:203.0.113.9'), 5000, 443, toIPv6('::ffff:203.0.113.9'), "
                f"toIPv6('::ffff:{PUB}'), 443, {port}, {start}, 250000, {exact}, {end}, 0, "
                f"10, 1, 20, 2, 0, 0, {KEY})")  # shard_key: as the output writes it
    run(engine, "INSERT INTO nat.ulog_nat VALUES " + ",".join([
        row(1, 1, "100.64.0.1", 40000, T0, exact=0), row(4, 1, "100.64.0.1", 40000, T0,
                                                         T0 + 10),
        row(1, 2, "100.64.0.2", 40000, T0 + 20, exact=0),
        row(1, 3, "100.64.0.3", 40001, T0 - 3 * 86400),  # long-lived, still open
    ]))
    for q, inside in ((Query(ip=PUB, port=40000, at=T0 + 5), "100.64.0.1"),
                      (Query(ip=PUB, port=40000, at=T0 + 30), "100.64.0.2"),
                      (Query(ip=PUB, port=40001, at=T0), "100.64.0.3")):
        sql, params = lookup_sql("nat.ulog_nat", CURRENT, q)
        flows = rank(rows_to_flows([tuple(r) for r in run(engine, substitute(sql, params))],
                                   "ch"), q)
        assert flows and flows[0].inside_ip == inside, (q, flows)
        assert flows[0].public_ip == PUB and flows[0].remote_ip == "203.0.113.9"
    first = rank(rows_to_flows([tuple(r) for r in run(engine, substitute(*lookup_sql(
        "nat.ulog_nat", CURRENT, Query(ip=PUB, port=40000, at=T0 + 5))))], "ch"),
        Query(ip=PUB, port=40000, at=T0 + 5))[0]
    assert (first.start, first.end, first.orig_bytes) == (T0 + 0.25, T0 + 10.0, 10)
    assert first.start_exact  # the DESTROY's kernel start


def test_cluster_ddl_parses(engine) -> None:
    for _, sql in create_statements("nat", "ulog_nat", CURRENT, cluster="fleet",
                                    retention_days=30):
        text = sql.replace("'", "\\'")
        formatted = run(engine, f"SELECT formatQuery('{text}')")[0][0]
        assert "ON CLUSTER fleet" in formatted
    assert "Distributed(fleet, nat, ulog_nat_local, shard_key)" in formatted
