"""merge_flows with DESTROYs completed in batches (ulogpy/db/sqlitemerge.py) stores the
same rows, in the same order, as one UPDATE per DESTROY.

Two SQLite files take the same event sequences (hypothesis: NEWs and DESTROYs of a few
flows, repeated NEWs, DESTROYs without a NEW or twice, in any split into batches), one
through the batches, one row by row; their tables must be equal, rowid for rowid.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.db.test_sqlite3 import _ct
from ulogpy.config.load import load_config
from ulogpy.core.stack import build_pipeline
from ulogpy.db import sqlitemerge

pytestmark = pytest.mark.skipif(not sqlitemerge.available(), reason="SQLite before 3.33")


def _sink(d: Path, name: str):
    conf = d / f"{name}.conf"
    conf.write_text(f'[global]\nstack=ct1:NFCT,ip2str1:IP2STR,db1:SQLITE3\n[ct1]\n[db1]\n'
                    f'db="{d}/{name}.sqlite"\ntable="ulog2_ct"\nmerge_flows=1\n'
                    f'create_table=1\nspool_dir="{d}/spool-{name}"\n')
    sink = build_pipeline(load_config(str(conf))).stacks[0].output.transport
    sink.open()
    return sink


@pytest.fixture(scope="module")
def sinks(tmp_path_factory):
    d = tmp_path_factory.mktemp("merge")
    batched, one_by_one = _sink(d, "batched"), _sink(d, "rows")
    assert batched.destroys is not None
    one_by_one.destroys = None
    yield batched, one_by_one
    batched.close()
    one_by_one.close()


FLOWS = [1000, 1001, 1002, None]  # None: an ICMPv6 flow, no ports
EVENT = st.tuples(st.sampled_from([1, 4]), st.sampled_from(FLOWS), st.integers(0, 9))


def _record(event: int, flow: int | None, n: int) -> dict:
    extra = {"icmp.type": 128, "icmp.code": 0} if flow is None else {}
    rec = _ct(event, flow, **({"proto": 58, "fam": 10} if flow is None else {}), **extra)
    rec["orig.raw.pktcount"] = n  # tells the DESTROYs apart
    return rec


def _table(sink) -> list[tuple]:
    return sink.conn.execute("SELECT * FROM ulog2_ct ORDER BY _ct_id").fetchall()


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(EVENT, max_size=60), cuts=st.lists(st.integers(1, 60), max_size=4))
def test_batched_destroys_store_what_one_update_each_stores(sinks, events, cuts) -> None:
    batched, one_by_one = sinks
    for sink in sinks:
        sink.conn.execute("DELETE FROM ulog2_ct")
    records = [_record(*e) for e in events]
    bounds = sorted({0, len(records), *(c for c in cuts if c < len(records))})
    for start, end in zip(bounds, bounds[1:], strict=False):
        for sink in sinks:
            assert sink.write(records[start:end]) == end - start
    assert _table(batched) == _table(one_by_one)


def test_a_long_run_of_destroys_spans_several_batches(sinks) -> None:
    batched, one_by_one = sinks
    for sink in sinks:
        sink.conn.execute("DELETE FROM ulog2_ct")
    records = [_ct(1, 2000 + i) for i in range(300)] + \
        [_ct(4, 2000 + i) for i in range(0, 300, 2)] + [_ct(4, 9000 + i) for i in range(50)]
    for sink in sinks:
        assert sink.write(records) == len(records)
    rows = _table(batched)
    assert rows == _table(one_by_one) and len(rows) == 350
    events = sqlite3.connect(batched.path).execute(
        "SELECT ct_event, count(*) FROM ulog2_ct GROUP BY ct_event").fetchall()
    assert events == [(1, 150), (4, 200)]
    assert len(records) > 2 * batched.destroys.size
