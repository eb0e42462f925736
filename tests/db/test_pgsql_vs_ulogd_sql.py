"""PGSQL writes what ulogd writes: the same events into ulogd's schema give the same rows.

The oracle is `statements_sent_by_ulogd.sql`, the SQL text ulogd 2.0.8 sent to a server
for real NFLOG packets (INSERT_PACKET_FULL), conntrack events (INSERT_OR_REPLACE_CT) and
a plain INSERT into a table of its own.  Database A runs that text as is; database B gets
the same events through ulogpy's PGSQL outputs (values bound as parameters).  Every
table must then hold the same rows, ids included (same order, same sequences).
"""

from __future__ import annotations

import re

import pytest
from ulogpy.plugins.output.pgsql import PGSQL

from tests.db.helpers import SAMPLES, count, stack_keys, table_rows, wait_for
from ulogpy.core.keys import KeyType

STATEMENTS = SAMPLES / "pgsql" / "statements_sent_by_ulogd.sql"
CTINS = ("CREATE TABLE ctins (orig_ip_saddr_str inet, orig_l4_dport integer, ct_event "
         "integer, flow_start_sec bigint, flow_end_sec bigint, orig_raw_pktcount bigint, "
         "oob_family integer);")
_ARG = re.compile(r"'(?:[^']|'')*'|[^,]+")
TABLES = ("ulog2", "tcp", "udp", "icmp", "icmpv6", "sctp", "hwhdr", "mac", "ulog2_ct",
          "ctins")
PACKET_KEYS = stack_keys("NFLOG", "BASE", "IFINDEX", "IP2STR", "HWHDR")
FLOW_KEYS = stack_keys("NFCT", "IP2STR")


def _literals(text: str) -> list[str]:
    return [m.group(0).strip() for m in _ARG.finditer(text)]


def _value(literal: str, key_type: KeyType):
    if literal == "NULL":
        return None
    if literal.startswith("'"):
        text = literal[1:-1].replace("''", "'")
        return int(text) if key_type is KeyType.BOOL else text
    return int(literal)


def _record(columns: list[str], literals: list[str], keys) -> dict:
    types = {k.name: k.type for k in keys}
    record = {}
    for col, lit in zip(columns, literals, strict=True):
        name = col.replace("_", ".")
        value = _value(lit, types[name])
        if value is not None:
            record[name] = value
    return record


def _statements() -> list[str]:
    return [ln for ln in STATEMENTS.read_text().splitlines()
            if ln.startswith(("SELECT INSERT_", "insert into"))]


def _view_columns(conninfo: str, name: str) -> list[str]:
    from tests.db.helpers import query

    return [r[0] for r in query(
        conninfo, "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
        "ORDER BY ordinal_position", (name,))][1:]


@pytest.fixture
def both(new_db, pg):
    theirs, ours = new_db(), new_db()
    for db in (theirs, ours):
        name = db.split("dbname=")[1].split()[0]
        pg.psql(name, CTINS)
    return theirs, ours


def test_same_rows_as_ulogds_statements(both, pg, harness):
    theirs, ours = both
    statements = _statements()
    assert len(statements) > 20
    name = theirs.split("dbname=")[1].split()[0]
    pg.psql(name, ";\n".join(statements) + ";")

    base = {"db": ours.split("dbname=")[1].split()[0], "host": str(pg.sockdir),
            "port": pg.port, "user": "postgres"}
    pkt = harness.make(PGSQL, {**base, "table": "ulog", "procedure": "INSERT_PACKET_FULL"},
                       PACKET_KEYS, "pg1")
    flows = harness.make(PGSQL, {**base, "table": "ulog2_ct",
                                 "procedure": "INSERT_OR_REPLACE_CT"}, FLOW_KEYS, "pg2")
    plain = harness.make(PGSQL, {**base, "table": "ctins", "procedure": "INSERT"},
                         FLOW_KEYS, "pg4")
    ulog_cols = _view_columns(ours, "ulog")
    ct_cols = _view_columns(ours, "ulog2_ct")
    fed = 0
    for stmt in statements:
        if stmt.startswith("SELECT INSERT_PACKET_FULL("):
            args = _literals(stmt[len("SELECT INSERT_PACKET_FULL("):-1])
            pkt.write(_record(ulog_cols, args, PACKET_KEYS))
        elif stmt.startswith("SELECT INSERT_OR_REPLACE_CT("):
            args = _literals(stmt[len("SELECT INSERT_OR_REPLACE_CT("):-1])
            flows.write(_record(ct_cols, args, FLOW_KEYS))
        else:
            m = re.match(r"insert into public\.ctins \((.*?)\) values \((.*)\)$", stmt)
            plain.write(_record(m.group(1).split(","), _literals(m.group(2)), FLOW_KEYS))
        fed += 1
    for out in (pkt, flows, plain):
        out.flush()
    wait_for(lambda: sum(o.counters.get("written") for o in (pkt, flows, plain)) == fed,
             what=f"{fed} rows stored")
    assert count(ours, "ulog2") == count(theirs, "ulog2") > 5
    for table in TABLES:
        assert table_rows(ours, table, drop=("timestamp",)) == \
            table_rows(theirs, table, drop=("timestamp",)), table
    for out in (pkt, flows, plain):
        assert out.counters.get("rejected") == 0
        assert out.counters.get("dropped") == 0
