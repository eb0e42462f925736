"""MYSQL never loses rows to an absent server, never blocks the caller, never logs the
password, and binds every value.

The server really goes away (MariaDB stopped) or the database does not exist yet; rows
queue in memory, overflow to the spool, and reach the table in their original order
once it is back.  At stop, what the server has not taken is saved to the spool, and the
next start replays it first.
"""

from __future__ import annotations

import subprocess
import time

import pytest
from ulogpy.plugins.output.mysql import MYSQL

from tests.db.helpers import stack_keys, wait_for
from tests.ulogd_ref import ULOGPY

KEYS = stack_keys("NFCT", "IP2STR")
TABLE = ("CREATE TABLE events (_seq bigint AUTO_INCREMENT PRIMARY KEY, orig_l4_sport int, "
         "orig_ip_saddr_str varchar(40), ct_event tinyint unsigned, ct_mark int unsigned)")
SECRET = "s3cr'et\\pw"
HOSTILE = ["x'); DROP TABLE events; --", "\\'; DROP TABLE events; --", "%s%s%(x)s",
           "`; DROP TABLE events; --"]


def _options(my, db: str, **extra) -> dict:
    return {"db": db, "host": "localhost", "socket": str(my.socket), "user": "root",
            "pass": "", "table": "events", "procedure": "INSERT", "reconnect": 1,
            "reconnect_max": 1, **extra}


def _record(n: int, text: str | None = None) -> dict:
    return {"orig.l4.sport": n, "orig.ip.saddr.str": text or f"10.0.{n // 256}.{n % 256}",
            "ct.event": 1, "ct.mark": 4000000000}


def _sports(my, db: str) -> list[int]:
    return [r[0] for r in my.query(db, "SELECT orig_l4_sport FROM events ORDER BY _seq")]


def test_database_missing_at_start_then_appearing(my, harness):
    out = harness.make(MYSQL, _options(my, "late_db", queue_size=20), KEYS)
    started = time.monotonic()
    for n in range(100):
        out.write(_record(n))
    out.flush()
    assert time.monotonic() - started < 1.0  # write() never waits for the database
    assert out.counters.get("spooled") == 80
    assert out.counters.get("written") == 0
    my.create_db("late_db", TABLE)
    for n in range(100, 120):
        out.write(_record(n))
    out.flush()
    wait_for(lambda: out.counters.get("written") == 120, timeout=15, what="120 rows stored")
    assert _sports(my, "late_db") == list(range(120))
    assert out.counters.get("dropped") == 0
    # Unsigned 32-bit values keep their value (as ulogd writes them: decimal text).
    assert {r[0] for r in my.query("late_db", "SELECT ct_mark FROM events")} == {4000000000}


def test_server_stopped_and_back_loses_nothing(my, harness):
    my.create_db("outage_db", TABLE)
    out = harness.make(MYSQL, _options(my, "outage_db"), KEYS)
    for n in range(200):
        out.write(_record(n))
    out.flush()
    wait_for(lambda: out.counters.get("written") == 200, what="first rows")
    my.stop()
    try:
        started = time.monotonic()
        for n in range(200, 700):
            out.write(_record(n))
        out.flush()
        assert time.monotonic() - started < 1.0
        time.sleep(1.5)
    finally:
        my.start()
    wait_for(lambda: out.counters.get("written") == 700, timeout=20, what="700 rows")
    assert _sports(my, "outage_db") == list(range(700))  # none lost, none twice, in order
    assert out.counters.get("write_errors") >= 1


def test_stop_while_down_spools_and_next_start_replays_first(my, harness, tmp_path):
    opts = _options(my, "resumed_db", queue_size=30, flush_timeout=1)
    first = harness.make(MYSQL, opts, KEYS)
    for n in range(50):
        first.write(_record(n))
    first.flush()
    harness.stop(first)
    assert first.counters.get("spooled") == 50
    my.create_db("resumed_db", TABLE)
    second = harness.make(MYSQL, opts, KEYS)
    for n in range(50, 60):
        second.write(_record(n))
    second.flush()
    wait_for(lambda: second.counters.get("written") == 60, timeout=15, what="60 rows")
    assert _sports(my, "resumed_db") == list(range(60))
    harness.stop(second)
    assert not list((tmp_path / "spool" / "out1").glob("*.spool"))


def test_hostile_values_are_stored_verbatim_and_bad_rows_rejected_alone(my, harness):
    my.create_db("hostile_db", TABLE)
    out = harness.make(MYSQL, _options(my, "hostile_db"), KEYS)
    for n, text in enumerate(HOSTILE):
        out.write(_record(n, text))
    bad = _record(99)
    bad["orig.l4.sport"] = 1 << 40  # out of range for int: the server refuses that row
    out.write(bad)
    out.write(_record(100))
    out.flush()
    wait_for(lambda: out.counters.get("written") + out.counters.get("rejected")
             == len(HOSTILE) + 2, what="rows handled")
    rows = my.query("hostile_db", "SELECT orig_ip_saddr_str FROM events ORDER BY _seq")
    assert [r[0] for r in rows] == HOSTILE + ["10.0.0.100"]
    assert out.counters.get("rejected") == 1


def test_password_never_in_messages(my, harness, db_log):
    my.add_password_user("pwuser", SECRET)
    my.create_db("pw_db", TABLE)
    wrong = SECRET + "-wrong"
    out = harness.make(MYSQL, {**_options(my, "pw_db"), "user": "pwuser", "pass": wrong},
                       KEYS)
    out.write(_record(1))
    out.flush()
    wait_for(lambda: out.counters.get("write_errors") >= 1, what="a refused login")
    harness.stop(out)
    assert "Access denied" in db_log.text
    assert wrong not in db_log.text and SECRET not in db_log.text
    good = harness.make(MYSQL, {**_options(my, "pw_db"), "user": "pwuser", "pass": SECRET},
                        KEYS)
    good.write(_record(2))
    good.flush()
    wait_for(lambda: good.counters.get("written") >= 1, what="rows with the password")


@pytest.mark.parametrize(("plugin", "section", "needle"), [
    ("MYSQL", 'procedure="INSERT INTO"', "procedure"),
    ("MYSQL", 'procedure="x; DROP TABLE t"', "procedure"),
    ("DBI", 'procedure="INSERT"\ndbtype="oracle"', "pgsql"),
    ("DBI", 'procedure="INSERT_CT"\ndbtype="sqlite3"', "INSERT"),
])
def test_bad_config_is_a_clear_error(tmp_path, plugin, section, needle):
    conf = tmp_path / "ulogd.conf"
    conf.write_text(f"[global]\nstack=ct1:NFCT,ip2bin1:IP2BIN,my1:{plugin}\n[ct1]\n[my1]\n"
                    'db="d"\nhost="localhost"\nuser="u"\npass="p"\ntable="t"\n'
                    f"{section}\n")
    proc = subprocess.run([ULOGPY, "-c", str(conf), "--check"], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "my1" in proc.stderr and needle in proc.stderr, proc.stderr
