"""SQLITE3: ulogd's rows with correct unsigned values, WAL, batches, and disks that fail.

The oracle is what ulogd 2.0.8's SQLITE3 wrote for the UNIXSOCK golden packets
(`samples/unixsock/sqlite3_rows.txt`, table from `sqlite3_schema.sql`): ulogpy writes
the same rows, except that ulogd stored TCP sequence 4000000000 as -294967296.
"""

from __future__ import annotations

import contextlib
import ipaddress
import sqlite3
import subprocess
from pathlib import Path

import pytest
from ulogpy.plugins.output.sqlite3 import SQLITE3

from tests.db.helpers import SAMPLES, stack_keys, wait_for

PKT_KEYS = stack_keys("UNIXSOCK", "BASE", "IP2STR")
FLOW_KEYS = stack_keys("NFCT", "IP2STR")
UNIXSOCK = SAMPLES / "unixsock"


def _ulogd_rows() -> tuple[list[str], list[list[str]]]:
    lines = (UNIXSOCK / "sqlite3_rows.txt").read_text().splitlines()
    return lines[0].split("|"), [ln.split("|") for ln in lines[1:]]


def _record_from_row(cols: list[str], row: list[str]) -> dict:
    types = {k.name: k.type.name for k in PKT_KEYS}
    rec: dict = {}
    for col, text in zip(cols, row, strict=True):
        key = col.replace("_", ".")
        if text == "":
            continue
        if key == "ip.saddr":  # the address itself, from the string column
            rec[key] = ipaddress.ip_address(row[cols.index("ip_saddr_str")]).packed
        elif types[key] == "STRING":
            rec[key] = text
        else:
            value = int(text)
            rec[key] = value + (1 << 32) if value < 0 else value  # the real u32
    return rec


def _rows(path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_same_rows_as_ulogd_but_unsigned_values_kept(tmp_path, harness):
    db = tmp_path / "pkt.sqlite"
    conn = sqlite3.connect(db)
    conn.executescript((UNIXSOCK / "sqlite3_schema.sql").read_text())
    conn.close()
    cols, rows = _ulogd_rows()
    out = harness.make(SQLITE3, {"db": str(db), "table": "pkt"}, PKT_KEYS)
    for row in rows:
        out.write(_record_from_row(cols, row))
    out.flush()
    wait_for(lambda: out.counters.get("written") == len(rows), what="rows stored")
    ours = _rows(db, f"SELECT {', '.join(cols)} FROM pkt")
    seq_at = cols.index("tcp_seq")
    for got, theirs in zip(ours, rows, strict=True):
        expected = ["" if v is None else str(v) for v in got]
        if theirs[seq_at] == "-294967296":  # ulogd's signed 32-bit bug
            theirs = [*theirs[:seq_at], "4000000000", *theirs[seq_at + 1:]]
        assert expected == theirs
    assert _rows(db, "PRAGMA journal_mode") == [("wal",)]


def test_values_at_and_above_2_31_round_trip(tmp_path, harness):
    db = tmp_path / "ct.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (ct_mark INTEGER, ct_id INTEGER, orig_raw_pktlen INTEGER, "
                 "flow_start_sec INTEGER, orig_ip_saddr INTEGER)")
    conn.close()
    out = harness.make(SQLITE3, {"db": str(db), "table": "t"}, FLOW_KEYS)
    values = [2**31 - 1, 2**31, 2**32 - 1]
    for v in values:
        out.write({"ct.mark": v, "ct.id": v, "orig.raw.pktlen": (1 << 40) + v,
                   "flow.start.sec": v, "orig.ip.saddr": bytes([192, 168, 1, 10])})
    out.write({"orig.raw.pktlen": 2**64 - 1})
    out.flush()
    wait_for(lambda: out.counters.get("written") == 4, what="4 rows")
    got = _rows(db, "SELECT ct_mark, ct_id, orig_raw_pktlen, flow_start_sec, orig_ip_saddr "
                    "FROM t ORDER BY rowid")
    assert got[:3] == [(v, v, (1 << 40) + v, v, 167880896) for v in values]
    assert got[3][2] in (2**64 - 1, str(2**64 - 1), float(2**64 - 1))


def _ct(event: int, sport: int | None, proto: int = 17, fam: int = 2, **extra) -> dict:
    src, dst = ("fd00::2", "fd00::9") if fam == 10 else ("10.0.0.2", "10.9.9.9")
    rec = {"oob.family": fam, "orig.ip.saddr.str": src, "orig.ip.daddr.str": dst,
           "orig.ip.protocol": proto, "reply.ip.saddr.str": dst,
           "reply.ip.daddr.str": "10.0.0.254" if fam == 2 else "fd00::fe",
           "reply.ip.protocol": proto, "ct.event": event, "ct.mark": 0,
           "orig.raw.pktlen": 0 if event == 1 else 100, "orig.raw.pktcount": 0 if event == 1
           else 2, **extra}
    if sport is not None:
        rec.update({"orig.l4.sport": sport, "orig.l4.dport": 53, "reply.l4.sport": 53,
                    "reply.l4.dport": 40000 + sport})
    if event == 1:
        rec.update({"flow.start.sec": 1700000000, "flow.start.usec": 5})
    else:
        rec.update({"flow.end.sec": 1700000009, "flow.end.usec": 7})
    return rec


def test_merge_flows_one_row_per_flow(tmp_path, harness):
    db = tmp_path / "flows.sqlite"
    out = harness.make(SQLITE3, {"db": str(db), "table": "ulog2_ct", "merge_flows": 1,
                                 "create_table": 1}, FLOW_KEYS)
    out.write(_ct(1, 1000))
    out.write(_ct(1, 1001))
    out.write(_ct(1, None, proto=58, fam=10, **{"icmp.type": 128, "icmp.code": 0}))
    out.write(_ct(4, 1001))
    out.write(_ct(4, 1000))
    out.write(_ct(4, None, proto=58, fam=10, **{"icmp.type": 128, "icmp.code": 0}))
    out.write(_ct(4, 2000))  # DESTROY of a flow whose NEW was never seen: kept
    out.flush()
    wait_for(lambda: out.counters.get("written") == 7, what="7 events")
    rows = _rows(db, "SELECT orig_l4_sport, ct_event, flow_start_sec, flow_end_sec, "
                     "orig_raw_pktcount, orig_ip_protocol FROM ulog2_ct ORDER BY _ct_id")
    assert rows == [
        (1000, 4, 1700000000, 1700000009, 2, 17),
        (1001, 4, 1700000000, 1700000009, 2, 17),
        (None, 4, 1700000000, 1700000009, 2, 58),
        (2000, 4, None, 1700000009, 2, 17),
    ]
    # The DESTROY's look-up narrows to one flow even in a port scan (one source port,
    # many destination ports): all four columns of the tuple come from the index.
    plan = _rows(db, "EXPLAIN QUERY PLAN UPDATE ulog2_ct SET ct_event = 4 WHERE "
                     "orig_ip_saddr_str IS '10.0.0.2' AND orig_l4_sport IS 1000 AND "
                     "orig_ip_daddr_str IS 'x' AND orig_l4_dport IS 53 AND ct_event < 4")
    assert "USING INDEX ulog2_ct_open_tuples (orig_ip_saddr_str=? AND orig_l4_sport=? AND " \
        "orig_ip_daddr_str=? AND orig_l4_dport=?)" in str(plan), plan


def test_missing_table_is_reported_and_retried(tmp_path, harness, db_log):
    db = tmp_path / "late.sqlite"
    out = harness.make(SQLITE3, {"db": str(db), "table": "ulog_ct", "reconnect_max": 1},
                       FLOW_KEYS)
    out.write({"ct.mark": 1})
    out.flush()
    wait_for(lambda: "is empty or missing" in db_log.text, what="missing table logged")
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE ulog_ct (ct_mark INTEGER)")
    conn.close()
    wait_for(lambda: out.counters.get("written") == 1, timeout=10, what="row stored")


@contextlib.contextmanager
def tiny_disk(path: Path, size: str = "512k"):
    """A tmpfs of `size` on `path` (a test's own directory), unmounted afterwards."""
    path.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                           str(path)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)
    return filler


def test_full_disk_is_reported_once_and_retried(tmp_path, harness, db_log):
    with tiny_disk(tmp_path / "disk") as disk:
        db = disk / "ct.sqlite"
        conn = sqlite3.connect(db)
        conn.execute("CREATE TABLE t (ct_mark INTEGER, orig_ip_saddr_str TEXT)")
        conn.close()
        out = harness.make(SQLITE3, {"db": str(db), "table": "t", "reconnect_max": 1},
                           FLOW_KEYS)
        out.write({"ct.mark": 0, "orig.ip.saddr.str": "x"})
        out.flush()
        wait_for(lambda: out.counters.get("written") == 1, what="first row")
        filler = _fill(disk)
        n = 3000
        for i in range(1, n):
            out.write({"ct.mark": i, "orig.ip.saddr.str": "10.0.0.1" * 8})
        out.flush()
        wait_for(lambda: out.counters.get("write_errors") >= 3, timeout=15,
                 what="several failed attempts")
        assert out.counters.get("written") < n
        full = [r for r in db_log.records if "full" in r.getMessage()
                and r.levelname == "ERROR"]
        assert len(full) == 1  # once per outage, not once per attempt
        filler.unlink()
        wait_for(lambda: out.counters.get("written") == n, timeout=20, what="all rows")
        assert _rows(db, "SELECT count(*), min(ct_mark), max(ct_mark) FROM t") == \
            [(n, 0, n - 1)]
        assert out.counters.get("dropped") == 0
        harness.stop(out)


@contextlib.contextmanager
def immutable(*paths: Path):
    """chattr +i: even root cannot write the files (the -shm map is left alone: SIGBUS)."""
    proc = subprocess.run(["chattr", "+i", *map(str, paths)], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        pytest.skip(f"chattr +i not supported here: {proc.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *map(str, paths)], check=False)


def test_read_only_database_is_retried(tmp_path, harness, db_log):
    db = tmp_path / "ct.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (ct_mark INTEGER)")
    conn.close()
    out = harness.make(SQLITE3, {"db": str(db), "table": "t", "reconnect_max": 1},
                       FLOW_KEYS)
    out.write({"ct.mark": 0})
    out.flush()
    wait_for(lambda: out.counters.get("written") == 1, what="first row")
    with immutable(db, Path(f"{db}-wal")):
        for i in range(1, 50):
            out.write({"ct.mark": i})
        out.flush()
        wait_for(lambda: out.counters.get("write_errors") >= 2, timeout=10, what="failures")
        assert out.counters.get("written") == 1
        errors = [r.getMessage() for r in db_log.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and ("readonly" in errors[0] or "I/O error" in errors[0])
    wait_for(lambda: out.counters.get("written") == 50, timeout=15, what="all rows")
    harness.stop(out)
    assert _rows(db, "SELECT count(*), sum(ct_mark) FROM t") == [(50, sum(range(50)))]


@pytest.mark.parametrize(("columns", "says"), [
    ("orig_ip_saddr_str TEXT, orig_l4_sport INTEGER", "merge_flows needs a ct_event column"),
    ("ct_event INTEGER, ct_mark INTEGER", "merge_flows needs the flow's columns"),
])
def test_merge_flows_on_a_table_it_cannot_merge_in_says_why(tmp_path, columns, says):
    from ulogpy.core.plugin import Unavailable
    from ulogpy.db.sqlitesink import SqliteSink

    path = tmp_path / "t.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TABLE flows ({columns})")
    conn.close()
    sink = SqliteSink(label="t", path=str(path), table="flows", stack_keys=FLOW_KEYS,
                      merge_flows=True)
    with pytest.raises(Unavailable, match=says):
        sink.open()
