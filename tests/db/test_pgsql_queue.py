"""PGSQL never loses rows to an unreachable database, and never blocks the writer's caller.

The database is "down" by not existing yet (connections fail as against a stopped
server, without stopping the shared test cluster): rows queue in memory, overflow to the
spool, and reach the table in their original order once it exists.  At stop, what the
database has not taken is saved to the spool, and the next start replays it first.
"""

from __future__ import annotations

import time

from ulogpy.plugins.output.pgsql import PGSQL

from tests.db.helpers import query, stack_keys, wait_for

KEYS = stack_keys("NFCT", "IP2STR")
TABLE = ("CREATE TABLE events (_seq bigserial PRIMARY KEY, orig_l4_sport integer, "
         "orig_ip_saddr_str inet, ct_event integer)")


def _options(pg, db: str, **extra) -> dict:
    return {"db": db, "host": str(pg.sockdir), "port": pg.port, "user": "postgres",
            "table": "events", "procedure": "INSERT", "reconnect": 1, **extra}


def _record(n: int) -> dict:
    return {"orig.l4.sport": n, "orig.ip.saddr.str": f"10.0.{n // 256}.{n % 256}",
            "ct.event": 1}


def _stored_sports(conninfo: str) -> list[int]:
    return [r[0] for r in query(conninfo, "SELECT orig_l4_sport FROM events ORDER BY _seq")]


def test_database_missing_at_start_then_appearing(pg, harness, tmp_path):
    out = harness.make(PGSQL, _options(pg, "late_db", queue_size=20), KEYS)
    started = time.monotonic()
    for n in range(100):
        out.write(_record(n))
    out.flush()
    assert time.monotonic() - started < 1.0  # write() never waits for the database
    assert out.writer.buffer.depth() == 100
    assert out.counters.get("spooled") == 80
    assert out.counters.get("written") == 0
    time.sleep(0.3)
    conninfo = pg.create_db("late_db")
    pg.psql("late_db", TABLE)
    for n in range(100, 120):  # rows keep arriving while the spool is replayed
        out.write(_record(n))
    out.flush()
    wait_for(lambda: out.counters.get("written") == 120, timeout=15, what="120 rows stored")
    assert _stored_sports(conninfo) == list(range(120))
    # Rows arriving while the spool is read go behind it (order), so they count as well.
    assert out.counters.get("replayed") == out.counters.get("spooled") >= 80
    assert out.counters.get("dropped") == 0
    assert out.counters.get("write_errors") >= 1


def test_stop_while_down_spools_and_next_start_replays_first(pg, harness, tmp_path):
    opts = _options(pg, "resumed_db", queue_size=30, flush_timeout=1)
    first = harness.make(PGSQL, opts, KEYS)
    for n in range(50):  # 30 in memory, 20 spooled
        first.write(_record(n))
    first.flush()
    harness.stop(first)
    assert first.counters.get("spooled") == 50  # 20 on overflow + 30 at exit
    assert first.counters.get("dropped") == 0
    conninfo = pg.create_db("resumed_db")
    pg.psql("resumed_db", TABLE)
    second = harness.make(PGSQL, opts, KEYS)
    for n in range(50, 60):
        second.write(_record(n))
    second.flush()
    wait_for(lambda: second.counters.get("written") == 60, timeout=15, what="60 rows")
    assert _stored_sports(conninfo) == list(range(60))
    assert second.counters.get("replayed") == 60  # the 50 old rows and the 10 behind them
    harness.stop(second)
    spool = tmp_path / "spool" / "out1"
    assert not list(spool.glob("*.spool"))  # all consumed


def test_stop_flushes_to_a_live_database(pg, harness):
    conninfo = pg.create_db("flush_db")
    pg.psql("flush_db", TABLE)
    out = harness.make(PGSQL, _options(pg, "flush_db"), KEYS)
    for n in range(2000):
        out.write(_record(n))
    out.flush()
    harness.stop(out)  # no waiting before: stop itself must flush
    assert _stored_sports(conninfo) == list(range(2000))
    assert out.counters.get("written") == 2000
    assert out.counters.get("spooled") == 0


def test_bad_row_is_rejected_alone(pg, harness, db_log):
    conninfo = pg.create_db("reject_db")
    pg.psql("reject_db", TABLE)
    out = harness.make(PGSQL, _options(pg, "reject_db"), KEYS)
    for n in range(10):
        rec = _record(n)
        if n == 4:
            rec["orig.ip.saddr.str"] = "not an address"
        out.write(rec)
    out.flush()
    wait_for(lambda: out.counters.get("written") + out.counters.get("rejected") == 10,
             what="10 rows handled")
    assert _stored_sports(conninfo) == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert out.counters.get("rejected") == 1
    assert "row rejected" in db_log.text and "not an address" in db_log.text
