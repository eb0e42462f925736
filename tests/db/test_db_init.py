"""`ulogpy db init`: ulogpy's own schema is ulogd's schema (same tables, columns,
functions and function results) plus NAT-lookup indexes; on a ulogd database it adds
only what is missing, and running it again changes nothing."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.db.helpers import SAMPLES, query, table_rows
from tests.ulogd_ref import ULOGPY

NAT_INDEXES = ["index ulog2_ct_nat_lookup", "index ulog2_ct_flow_start",
               "index ulog2_ct_flow_end"]
TABLES = ("ulog2", "tcp", "udp", "icmp", "icmpv6", "sctp", "hwhdr", "mac", "ulog2_ct",
          "nfacct", "ulog", "_format", "ip_proto", "_extensions")
#: Calls ulogd's shipped sample does not make: Ethernet headers (mac table, twice the same
#: addresses), SCTP, ICMPv6, ICMP and TCP flows through INSERT_OR_REPLACE_CT, nfacct.
EXTRA_CALLS = (Path(__file__).with_name("extra_calls.sql")).read_text()


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ULOGPY, "db", "init", *args], capture_output=True, text=True,
                          timeout=60)


def _created(proc: subprocess.CompletedProcess) -> list[str]:
    return [ln.split(": created ", 1)[1] for ln in proc.stdout.splitlines()
            if ": created " in ln]


def _dbname(conninfo: str) -> str:
    return conninfo.split("dbname=")[1].split()[0]


def _calls() -> str:
    ulogd = [ln for ln in (SAMPLES / "pgsql" / "statements_sent_by_ulogd.sql").read_text()
             .splitlines() if ln.startswith("SELECT INSERT_")]
    return ";\n".join(ulogd) + ";\n" + EXTRA_CALLS


def test_empty_database_gets_the_whole_schema_once(new_db):
    conninfo = new_db(schema=False)
    first = _run("--pgsql", conninfo)
    assert first.returncode == 0, first.stderr
    made = _created(first)
    for item in ("table ulog2", "table ulog2_ct", "view ulog", "function insert_packet_full",
                 "function insert_or_replace_ct", "function insert_ct", *NAT_INDEXES):
        assert item in made
    again = _run("--pgsql", conninfo)
    assert again.returncode == 0 and _created(again) == []
    assert "nothing to do" in again.stdout
    assert query(conninfo, "SELECT version FROM _format") == [(6,)]


def test_ulogd_database_gets_only_the_missing_indexes(new_db):
    conninfo = new_db(schema=True)
    before = query(conninfo, "SELECT count(*) FROM pg_class")
    proc = _run("--pgsql", conninfo)
    assert proc.returncode == 0, proc.stderr
    assert sorted(_created(proc)) == sorted(NAT_INDEXES)
    after = query(conninfo, "SELECT count(*) FROM pg_class")
    assert after[0][0] == before[0][0] + 3
    assert _created(_run("--pgsql", conninfo)) == []


def _columns(conninfo: str) -> list[tuple]:
    return query(conninfo, "SELECT table_name, column_name, ordinal_position, data_type, "
                 "character_maximum_length FROM information_schema.columns WHERE "
                 "table_schema = 'public' ORDER BY 1, 3")


def _functions(conninfo: str) -> list[tuple]:
    return query(conninfo, "SELECT p.proname, "
                 "array(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) t), "
                 "format_type(p.prorettype, NULL) FROM pg_proc p JOIN pg_namespace n "
                 "ON n.oid = p.pronamespace WHERE n.nspname = 'public' ORDER BY 1")


def test_same_columns_functions_and_results_as_ulogds_schema(new_db, pg):
    theirs = new_db(schema=True)
    ours = new_db(schema=False)
    assert _run("--pgsql", ours).returncode == 0
    assert _columns(ours) == _columns(theirs)
    assert _functions(ours) == _functions(theirs)
    for db in (theirs, ours):
        pg.psql(_dbname(db), _calls())
    for table in TABLES:
        drop = ("timestamp",)
        assert table_rows(ours, table, drop) == table_rows(theirs, table, drop), table
    assert query(ours, "SELECT count(*) FROM mac") == [(1,)]
    # ulogd's 9 UDP flows and the ICMP and TCP flows above were completed by DESTROY.
    assert query(ours, "SELECT count(*) FROM ulog2_ct WHERE ct_event = 4") == [(11,)]


def test_other_schema_and_config_instances(new_db, pg, tmp_path):
    conninfo = new_db(schema=False)
    proc = _run("--pgsql", conninfo, "--schema", "logs")
    assert proc.returncode == 0, proc.stderr
    assert query(conninfo, "SELECT to_regclass('logs.ulog2_ct') IS NOT NULL, "
                           "to_regclass('public.ulog2_ct') IS NULL") == [(True, True)]
    conf = tmp_path / "ulogd.conf"
    conf.write_text(f"""[global]
stack=ct1:NFCT,ip2str1:IP2STR,pg1:PGSQL
stack=ct1:NFCT,ip2str1:IP2STR,sq1:SQLITE3
[ct1]
hash_enable=0
[pg1]
db="{_dbname(conninfo)}"
host="{pg.sockdir}"
port={pg.port}
user="postgres"
pass="hunter2-secret"
schema="logs"
table="ulog2_ct"
procedure="INSERT_OR_REPLACE_CT"
[sq1]
db="{tmp_path}/flows.sqlite"
table="ulog2_ct"
""")
    proc = subprocess.run([ULOGPY, "db", "init", "-c", str(conf)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "pg1: nothing to do" in proc.stdout
    assert "sq1: created table ulog2_ct" in proc.stdout
    bad = subprocess.run([ULOGPY, "db", "init", "-c", str(conf), "nosuch"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "nosuch" in bad.stderr


def test_unreachable_database_fails_without_the_password(pg):
    proc = _run("--pgsql", f"host={pg.sockdir} port={pg.port} dbname=absent user=postgres "
                           "password=hunter2-secret")
    assert proc.returncode == 1
    assert "absent" in proc.stderr and "hunter2" not in proc.stderr + proc.stdout


def test_sqlite_init_is_idempotent(tmp_path):
    db = tmp_path / "x.sqlite"
    first = _run("--sqlite", str(db))
    assert first.returncode == 0, first.stderr
    assert {"table ulog_ct", "table ulog_pkt", "table ulog2_ct",
            "index ulog2_ct_nat_lookup"} <= set(_created(first))
    assert _created(_run("--sqlite", str(db))) == []
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    indexes = {r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'ulog2_ct'")}
    conn.close()
    # what the merge (open_tuples) and the lookup (nat_lookup) use, and two for ad-hoc
    # queries; none on flow_end_sec, which every merged DESTROY would move (sqlite.sql)
    assert indexes == {"ulog2_ct_open_tuples", "ulog2_ct_nat_lookup",
                       "ulog2_ct_orig_ip_saddr", "ulog2_ct_flow_start"}


@pytest.mark.parametrize("args", [["--pgsql", "x", "-c", "y"], []])
def test_bad_invocations(args, tmp_path):
    proc = subprocess.run([ULOGPY, "db", "init", *args, "-c", str(tmp_path / "none.conf")]
                          if not args else [ULOGPY, "db", "init", *args],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr


def test_sqlite_init_replaces_the_open_flows_index_that_lacked_the_destination_port(tmp_path):
    """A history made by an earlier ulogpy has ulog2_ct_open_flows (no destination port,
    so a port scan's DESTROYs scanned every open row of the scan): init swaps it."""
    db = tmp_path / "old.sqlite"
    assert _run("--sqlite", str(db)).returncode == 0
    conn = sqlite3.connect(db)
    conn.executescript("DROP INDEX ulog2_ct_open_tuples; CREATE INDEX ulog2_ct_open_flows "
                       "ON ulog2_ct (orig_ip_saddr_str, orig_l4_sport, orig_ip_daddr_str) "
                       "WHERE ct_event < 4;")
    conn.close()
    proc = _run("--sqlite", str(db))
    assert proc.returncode == 0, proc.stderr
    assert "index ulog2_ct_open_tuples" in _created(proc)
    conn = sqlite3.connect(db)
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    conn.close()
    assert "ulog2_ct_open_tuples" in indexes and "ulog2_ct_open_flows" not in indexes
