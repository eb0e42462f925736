"""SQLITE3 at burst rates: rows handed over a few at a time still commit in large
transactions (why: ulogpy/db/sqlitesink.py, COMMIT_DELAY_S), and a lone row still
reaches the file without more rows behind it.

The transactions are counted on the real SQLite connection (its trace callback sees
every COMMIT the sink sends), the rows read back from the file.
"""

from __future__ import annotations

import sqlite3
import time

import pytest
from ulogpy.plugins.output.sqlite3 import SQLITE3

from tests.db.helpers import stack_keys, wait_for
from tests.db.test_sqlite3 import _ct
from ulogpy.db.sqlitesink import SQLITE_BATCH_ROWS

FLOW_KEYS = stack_keys("NFCT", "IP2STR")
FLOWS = 3000


def _commits(out) -> list[str]:
    """Every COMMIT on the sink's connection from now on (opened by the writer thread)."""
    seen: list[str] = []
    conn = wait_for(lambda: out.transport.conn, what="the database open")
    conn.set_trace_callback(
        lambda sql: seen.append(sql) if sql == "COMMIT" else None)
    return seen


def _count(db) -> tuple[int, int]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT count(*), sum(ct_event = 4) FROM ulog2_ct").fetchone()
    finally:
        conn.close()


@pytest.mark.parametrize("batch_rows", [500, None])
def test_small_hand_overs_commit_in_large_transactions(tmp_path, harness, batch_rows):
    db = tmp_path / "flows.sqlite"
    options = {"db": str(db), "table": "ulog2_ct", "merge_flows": 1, "create_table": 1,
               "queue_size": 2 * FLOWS}
    if batch_rows is not None:
        options["batch_rows"] = batch_rows
    out = harness.make(SQLITE3, options, FLOW_KEYS)
    commits = _commits(out)
    for event in (1, 4):  # every flow's NEW, then its DESTROY (the bench's flush)
        for i in range(FLOWS):
            out.write(_ct(event, 1024 + i))
            if i % 10 == 9:
                out.flush()  # a reader's batch of 10 events ...
                time.sleep(0.0005)  # ... then its wait for the kernel (the writer's turn)
    out.flush()
    wait_for(lambda: out.counters.get("written") == 2 * FLOWS, what="every row")
    assert _count(db) == (FLOWS, FLOWS)  # one row per flow, DESTROY merged in
    if batch_rows == 500:
        # 600 hand-overs; batch_rows=500 gives 12 transactions (more only if the machine
        # stalled for COMMIT_DELAY_S in the middle)
        assert 12 <= len(commits) <= 24, len(commits)
    else:
        # SQLITE3's own default (SQLITE_BATCH_ROWS, 5000): the 6000 rows take a
        # transaction per COMMIT_DELAY_S or per 5000 rows, fewer than 500-row ones give
        assert out.config.batch_rows == SQLITE_BATCH_ROWS == 5000
        assert 2 <= len(commits) < 12, len(commits)


def test_a_lone_row_is_committed_without_more_behind_it(tmp_path, harness):
    db = tmp_path / "flows.sqlite"
    out = harness.make(SQLITE3, {"db": str(db), "table": "ulog2_ct", "merge_flows": 1,
                                 "create_table": 1}, FLOW_KEYS)
    wait_for(lambda: out.transport.conn, what="the database open")
    out.write(_ct(1, 1000))
    out.flush()
    wait_for(lambda: _count(db)[0] == 1, what="the row in the file")
    assert out.counters.get("written") == 1


def test_multi_row_inserts_write_what_row_by_row_inserts_write(tmp_path):
    """NEWs go in multi-row INSERTs between the DESTROYs that complete them: the table
    (ids, merged rows, a DESTROY without its NEW) is the one that a statement per row
    gives (the sink's row-by-row path, which it takes after a rejected row)."""
    import random

    from ulogpy.db.schema import sqlite_table_sql
    from ulogpy.db.sqlitesink import SqliteSink

    rng = random.Random(7)
    records = []
    for i in range(3000):
        records.append(_ct(1, 1000 + i))
        if rng.random() < 0.6:  # a DESTROY of any flow so far, some twice
            records.append(_ct(4, 1000 + rng.randrange(i + 1)))
    records.append(_ct(4, 99999))

    def table(name: str, row_by_row: bool) -> list[tuple]:
        path = str(tmp_path / name)
        sink = SqliteSink(label="t", path=path, table="ulog2_ct", stack_keys=FLOW_KEYS,
                          merge_flows=True, create_sql=sqlite_table_sql("ulog2_ct"))
        sink.open()
        try:
            assert sink.chunk > 1
            for start in range(0, len(records), 500):
                batch = records[start:start + 500]
                if row_by_row:
                    stored = sink._one_by_one(sink.conn, [sink.build(r) for r in batch])
                else:
                    stored = sink.write(batch)
                assert stored == len(batch)
        finally:
            sink.close()
        conn = sqlite3.connect(path)
        try:
            return conn.execute("SELECT * FROM ulog2_ct ORDER BY _ct_id").fetchall()
        finally:
            conn.close()

    expected = table("rows.sqlite", row_by_row=True)
    # a row per flow, plus one per DESTROY that found no open row (a second one, 99999)
    assert len(expected) > 3001
    assert table("chunks.sqlite", row_by_row=False) == expected
