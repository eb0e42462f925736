"""nat-lookup's sources: JSON files (globs, rotation, gzip), SQLite, and the history a
configuration writes.  The same history read from JSON and from SQLite must give the
same answer; the SQLite query must be served by the lookup index (EXPLAIN).
"""

from __future__ import annotations

import gzip
import io
import json
import sqlite3
from pathlib import Path

import pytest

from tests.unit.test_natlookup import PUB, T0, nfct_line
from ulogpy.tools.natlookup import jsonlog, progress
from ulogpy.tools.natlookup.cli import main
from ulogpy.tools.natlookup.errors import LookupFailed
from ulogpy.tools.natlookup.flows import Query, rank
from ulogpy.tools.natlookup.jsonlog import JsonSource
from ulogpy.tools.natlookup.sources import config_sources, parse_source
from ulogpy.tools.natlookup.sql import SQLITE, index_sql, lookup_sql
from ulogpy.tools.natlookup.sqlite import SqliteSource

#: The `ulog2_ct` columns of ulogd's pgsql-ulogd2.sql, typed for SQLite.
CT_COLUMNS = ("oob_family", "orig_ip_saddr_str", "orig_ip_daddr_str", "orig_ip_protocol",
              "orig_l4_sport", "orig_l4_dport", "orig_raw_pktlen", "orig_raw_pktcount",
              "reply_ip_saddr_str", "reply_ip_daddr_str", "reply_ip_protocol",
              "reply_l4_sport", "reply_l4_dport", "reply_raw_pktlen", "reply_raw_pktcount",
              "icmp_code", "icmp_type", "ct_mark", "flow_start_sec", "flow_start_usec",
              "flow_end_sec", "flow_end_usec", "ct_event")
TUPLE = CT_COLUMNS[:6] + CT_COLUMNS[8:13]


def make_db(path: Path, table: str = "ulog2_ct", index: bool = True) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    cols = ", ".join(f"{c} {'TEXT' if c.endswith('_str') else 'INTEGER'}" for c in CT_COLUMNS)
    db.execute(f"CREATE TABLE {table} (_ct_id INTEGER PRIMARY KEY, {cols})")
    if index:
        db.execute(index_sql(table))
    return db


def row_of(line: str) -> dict:
    """A JSON record as the row ulogd's PGSQL/SQLITE3 would bind (key `.` -> column `_`)."""
    obj = json.loads(line)
    obj["orig.ip.saddr.str"] = obj.pop("src_ip")
    obj["orig.ip.daddr.str"] = obj.pop("dest_ip")
    return {c: obj.get(c.replace("_", ".")) for c in CT_COLUMNS}


def store(db: sqlite3.Connection, lines: list[str], table: str = "ulog2_ct") -> None:
    """INSERT_OR_REPLACE_CT's semantics: NEW inserts, DESTROY completes the open row of
    its tuple (`ct_event < 4`), a DESTROY with no open row is lost."""
    for line in lines:
        row = row_of(line)
        if row["ct_event"] == 4:
            match = " AND ".join(f"{c} IS :{c}" for c in TUPLE)
            db.execute(f"UPDATE {table} SET orig_raw_pktlen = :orig_raw_pktlen, "
                       "reply_raw_pktlen = :reply_raw_pktlen, ct_mark = :ct_mark, "
                       "flow_end_sec = :flow_end_sec, flow_end_usec = :flow_end_usec, "
                       f"ct_event = 4 WHERE ct_event < 4 AND {match}", row)
        else:
            db.execute(f"INSERT INTO {table} ({', '.join(CT_COLUMNS)}) VALUES "
                       f"({', '.join(':' + c for c in CT_COLUMNS)})", row)


def history() -> list[str]:
    """Port 40000 held by .2 (closed), then by .3 (twice, same tuple: new ct.id), the
    last one still open; one UDP flow on the same public port; one IPv6 flow."""
    h3 = ("10.77.1.3", 40000)
    v6 = dict(inside=("fd00:77:1::2", 40000), remote=("fd00:77:2::2", 80),
              public=("fd00:77:2::1", 40000))
    return [
        nfct_line(1, ct_id=1, start=T0),
        nfct_line(4, ct_id=1, start=T0, end=T0 + 10.5, orig_bytes=11, reply_bytes=22),
        nfct_line(1, ct_id=2, inside=h3, start=T0 + 12.25),
        nfct_line(1, ct_id=9, proto=17, inside=("10.77.1.9", 53), remote=("10.77.2.9", 53),
                  start=T0 + 13),
        nfct_line(4, ct_id=2, inside=h3, start=T0 + 12.25, end=T0 + 20),
        nfct_line(1, ct_id=3, inside=h3, start=T0 + 40),
        nfct_line(1, ct_id=4, start=T0 + 1, **v6),
        nfct_line(4, ct_id=4, start=T0 + 1, end=T0 + 2, **v6),
    ]


def summary(flows) -> list[tuple]:
    return [(f.inside_ip, f.inside_port, f.public_port, f.proto, f.start, f.end)
            for f in flows]


QUERIES = [Query(ip=PUB, port=40000, at=T0 + t) for t in (5, 10.2, 12.5, 30, 45, 1000)] + [
    Query(ip=PUB, port=40000, at=T0 + 14, proto=17),
    Query(ip=PUB, port=40000, at=T0 + 14, remote_ip="10.77.2.2", remote_port=80),
    Query(ip="fd00:77:2::1", port=40000, at=T0 + 1.5),
]


# ------------------------------------------------------------------------------ JSON


def write(path: Path, lines: list[str]) -> None:
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)


def test_json_and_sqlite_give_the_same_answers(tmp_path: Path) -> None:
    write(tmp_path / "flows.json", history())
    store(make_db(tmp_path / "flows.db"), history())
    js = JsonSource(str(tmp_path / "flows.json"))
    sq = SqliteSource(str(tmp_path / "flows.db"))
    for q in QUERIES:
        from_json = summary(rank(js.lookup(q), q))
        assert from_json == summary(rank(sq.lookup(q), q)), q
    held = [summary(rank(js.lookup(q), q))[:1] for q in QUERIES[:6]]
    # At +30 only the UDP flow (open since +13) holds the port; at +45 it and the .3 flow
    # reopened at +40 both do, the newer first.
    assert [h[0][0] if h else None for h in held] == [
        "10.77.1.2", "10.77.1.2", "10.77.1.3", "10.77.1.9", "10.77.1.3", "10.77.1.3"]


def test_json_rotated_and_gzipped_files(tmp_path: Path) -> None:
    """A flow whose NEW went to the rotated file and DESTROY to the current one."""
    lines = history()
    write(tmp_path / "flows.json.2.gz", lines[:1])
    write(tmp_path / "flows.json.1", lines[2:4])
    write(tmp_path / "flows.json", [lines[1], *lines[4:]])
    write(tmp_path / "flows.json.bak", [nfct_line(1, ct_id=50, inside=("10.9.9.9", 1),
                                                  start=T0 + 5)])
    (tmp_path / "one").mkdir()
    write(tmp_path / "one" / "all.json", lines)
    q = QUERIES[0]
    expected = summary(rank(JsonSource(str(tmp_path / "one" / "all.json")).lookup(q), q))
    config_like = JsonSource(str(tmp_path / "flows.json"), rotated=True)
    assert sorted(config_like.files()) == sorted(
        str(tmp_path / n) for n in ("flows.json", "flows.json.1", "flows.json.2.gz"))
    globbed = parse_source(f"json:{tmp_path}/flows.json*")
    assert summary(rank(config_like.lookup(q), q)) == expected
    assert expected[0][:2] == ("10.77.1.2", 40000) and expected[0][5] == T0 + 10.5
    assert "10.9.9.9" in [f.inside_ip for f in rank(globbed.lookup(q), q)]  # .bak globbed


def test_json_skips_other_records_and_counts_garbage(tmp_path: Path) -> None:
    nflog = json.dumps({"timestamp": "2026-11-26T21:36:41", "dvc": "Netfilter",
                        "oob.prefix": "40000", "src_ip": "10.77.1.2", "dest_ip": PUB,
                        "src_port": 40000, "dest_port": 40000})
    cut = history()[2][:260]  # a record cut short (disk full, crash)
    assert '"reply.l4.dport": 40000' in cut
    write(tmp_path / "mixed.json", [nflog, cut, "", *history()[:2], '["40000"]'])
    source = parse_source(f"json:{tmp_path}/mixed.json")
    found = rank(source.lookup(QUERIES[0]), QUERIES[0])
    assert summary(found) == [("10.77.1.2", 40000, 40000, 6, T0, T0 + 10.5)]
    assert source.notes == [f"json:{tmp_path}/mixed.json: 1 line(s) not JSON, skipped"]


def test_json_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "broken.json.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(LookupFailed, match="cannot read"):
        parse_source(f"json:{tmp_path}/broken.json.gz").lookup(QUERIES[0])
    with pytest.raises(LookupFailed, match="is a directory"):
        parse_source(f"json:{tmp_path}").lookup(QUERIES[0])
    with pytest.raises(LookupFailed, match="no such file"):
        JsonSource(str(tmp_path / "none.json"), rotated=True).lookup(QUERIES[0])


def test_progress_bar_only_on_a_terminal(tmp_path: Path, monkeypatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    write(tmp_path / "flows.json", history() * 100)
    monkeypatch.setattr(progress, "MIN_BYTES", 1)
    monkeypatch.setattr(jsonlog, "CHUNK", 4096)
    tty = Tty()
    monkeypatch.setattr("sys.stderr", tty)
    parse_source(f"json:{tmp_path}/flows.json").lookup(QUERIES[0])
    text = tty.getvalue()
    assert text.startswith(f"\rscanning json:{tmp_path}/flows.json [")
    assert "MiB/s" in text and text.endswith("\r\x1b[K")
    pipe = io.StringIO()
    monkeypatch.setattr("sys.stderr", pipe)
    parse_source(f"json:{tmp_path}/flows.json").lookup(QUERIES[0])
    assert pipe.getvalue() == ""


# ---------------------------------------------------------------------------- SQLite


def test_sqlite_query_is_served_by_the_lookup_index(tmp_path: Path) -> None:
    """Equalities on the public address and port, a range on the start, no sort."""
    db = make_db(tmp_path / "f.db")
    for q in (QUERIES[0], QUERIES[7]):
        sql, params = lookup_sql(SQLITE, "ulog2_ct", q)
        plan = [r[3] for r in db.execute("EXPLAIN QUERY PLAN " + sql, params)]
        searches = [p for p in plan if p.startswith("SEARCH ulog2_ct")]
        assert len(searches) == 2, plan
        assert all("USING INDEX ulog2_ct_nat_lookup (reply_ip_daddr_str=? AND "
                   "reply_l4_dport=? AND flow_start_sec" in p for p in searches), plan
        assert not any(p.startswith("SCAN ulog2_ct") or "TEMP B-TREE" in p for p in plan)


def test_sqlite_with_ulogpy_db_schema_uses_an_index(tmp_path: Path) -> None:
    """The table `ulogpy db init --sqlite` creates: the lookup never scans it."""
    schema = pytest.importorskip("ulogpy.db.schema")
    db = sqlite3.connect(tmp_path / "f.db")
    schema.sqlite_init(db)
    sql, params = lookup_sql(SQLITE, "ulog2_ct", QUERIES[0])
    plan = [r[3] for r in db.execute("EXPLAIN QUERY PLAN " + sql, params)]
    assert [p for p in plan if p.startswith("SEARCH ulog2_ct USING INDEX")], plan
    assert not [p for p in plan if p.startswith("SCAN ulog2_ct")], plan
    store(db, history())
    db.commit()
    assert summary(rank(SqliteSource(str(tmp_path / "f.db")).lookup(QUERIES[2]),
                        QUERIES[2]))[0][:2] == ("10.77.1.3", 40000)


def test_slow_lookup_without_index_says_so(tmp_path: Path, monkeypatch) -> None:
    """An existing ulogd database without the lookup index: the (slow) lookup notes it."""
    from ulogpy.tools.natlookup import sql

    monkeypatch.setattr(sql, "SLOW_S", -1.0)  # every lookup counts as slow
    for name, index in (("bare.db", False), ("indexed.db", True)):
        store(make_db(tmp_path / name, index=index), history())
        source = parse_source(f"sqlite://{tmp_path}/{name}")
        assert rank(source.lookup(QUERIES[0]), QUERIES[0])
        hint = [n for n in source.notes if "lacks the index on (reply_ip_daddr_str, "
                "reply_l4_dport, flow_start_sec)" in n and "ulogpy db init" in n]
        assert len(hint) == (0 if index else 1), source.notes


def test_sqlite_table_override_and_wal_reader(tmp_path: Path) -> None:
    """`?table=`; read while a writer holds the database open in WAL mode."""
    db = make_db(tmp_path / "f.db", table="nat_ct")
    db.execute("PRAGMA journal_mode=WAL")
    store(db, history(), table="nat_ct")
    db.execute("BEGIN")
    store(db, [nfct_line(1, ct_id=70, inside=("10.77.1.70", 1), start=T0 + 3)], "nat_ct")
    source = parse_source(f"sqlite://{tmp_path}/f.db?table=nat_ct")
    assert [f.inside_ip for f in rank(source.lookup(QUERIES[0]), QUERIES[0])] == ["10.77.1.2"]
    db.execute("COMMIT")
    assert [f.inside_ip for f in rank(source.lookup(QUERIES[0]), QUERIES[0])] == [
        "10.77.1.70", "10.77.1.2"]
    assert source.label == f"sqlite://{tmp_path}/f.db?table=nat_ct"


def test_sqlite_errors(tmp_path: Path) -> None:
    with pytest.raises(LookupFailed, match="no such file"):
        parse_source(f"sqlite://{tmp_path}/missing.db").lookup(QUERIES[0])
    assert not (tmp_path / "missing.db").exists()
    make_db(tmp_path / "f.db")
    with pytest.raises(LookupFailed, match="no table 'other'"):
        parse_source(f"sqlite://{tmp_path}/f.db?table=other").lookup(QUERIES[0])
    (tmp_path / "text.db").write_text("hello" * 1000)
    with pytest.raises(LookupFailed, match="not an SQLite database"):
        parse_source(f"sqlite://{tmp_path}/text.db").lookup(QUERIES[0])
    bare = sqlite3.connect(tmp_path / "bare.db")
    bare.execute("CREATE TABLE ulog2_ct (reply_ip_daddr_str TEXT)")
    bare.commit()
    with pytest.raises(LookupFailed, match="lacks a column"):
        parse_source(f"sqlite://{tmp_path}/bare.db").lookup(QUERIES[0])
    with pytest.raises(LookupFailed, match=r"only \?table"):
        parse_source(f"sqlite://{tmp_path}/f.db?mode=rw")


def test_sqlite_negative_mark_from_ulogd(tmp_path: Path) -> None:
    """ulogd's SQLITE3 binds u32 values as signed 32-bit (spec 6.7): mark 0xfffffffe is
    stored as -2 and must come back as 4294967294."""
    db = make_db(tmp_path / "f.db")
    store(db, [nfct_line(1, start=T0, mark=-2)])
    (flow,) = rank(SqliteSource(str(tmp_path / "f.db")).lookup(QUERIES[0]), QUERIES[0])
    assert flow.mark == 0xFFFFFFFE


# ---------------------------------------------------------------------------- config

CONFIG = """\
[global]
stack = [
  "ct1:NFCT,ip2str1:IP2STR,json1:JSON",
  "ct1:NFCT,ip2str1:IP2STR,db1:SQLITE3",
  "ct1:NFCT,ip2str1:IP2STR,pg1:PGSQL",
  "ct1:NFCT,ip2str1:IP2STR,print1:PRINTFLOW,emu1:LOGEMU",
  "ct2:NFCT,json2:JSON",
  "ct1:NFCT,ip2str1:IP2STR,json3:JSON",
  "log1:NFLOG,base1:BASE,ip2str2:IP2STR,json4:JSON",
]
[ct1]
hash_enable = 0
[json1]
file = "{d}/flows.json"
[db1]
db = "{d}/flows.db"
table = "ulog2_ct"
[pg1]
db = "ulogd"
user = "ulog"
pass = "s3cret"
host = "/run/pg"
port = 5433
table = "ulog2_ct"
procedure = "INSERT_OR_REPLACE_CT"
[emu1]
file = "{d}/flows.log"
[json2]
file = "{d}/noaddr.json"
[json3]
mode = "udp"
[json4]
file = "{d}/packets.json"
"""


# PGSQL's option `schema` shadows a BaseModel attribute; its module silences that, but
# pytest resets warning filters per test.
@pytest.mark.filterwarnings("ignore:Field name \"schema\":UserWarning")
def test_config_histories(tmp_path: Path) -> None:
    path = tmp_path / "ulogpy.toml"
    path.write_text(CONFIG.format(d=tmp_path))
    name, sources, notes = config_sources(str(path))
    assert name == str(path)
    labels = [s.label for s in sources]
    assert labels == [f"json:{tmp_path}/flows.json", f"sqlite://{tmp_path}/flows.db",
                      "postgresql://?host=/run/pg&port=5433&dbname=ulogd&user=ulog"
                      "&table=public.ulog2_ct"]
    assert sources[0].rotated
    assert sources[2].conninfo == ("host='/run/pg' port='5433' dbname='ulogd' user='ulog' "
                                   "password='s3cret'")
    assert len(notes) == 2
    assert "ct2:NFCT,json2:JSON" in notes[0] and "IP2STR" in notes[0]
    assert "mode udp" in notes[1]
    assert not (tmp_path / "flows.db").exists()  # nothing opened or created


def test_config_in_ulogd_syntax(tmp_path: Path) -> None:
    conf = tmp_path / "ulogd.conf"
    conf.write_text(f'[global]\nstack=ct1:NFCT,ip2str1:IP2STR,json1:JSON\n'
                    f'[ct1]\nhash_enable=0\n[json1]\nfile="{tmp_path}/f.json"\n')
    _, sources, _ = config_sources(str(conf))
    assert [s.label for s in sources] == [f"json:{tmp_path}/f.json"]


def test_progress_bar_drawing() -> None:
    out = io.StringIO()
    bar = progress.Progress(1000, "scan", stream=out, force=True)
    bar.update(500)
    assert out.getvalue().startswith("\rscan [" + "#" * 15 + " " * 15 + "]  50.0%")
    assert not progress.Progress(10**12, "scan", stream=io.StringIO()).enabled  # no tty


def test_shipped_config_history() -> None:
    """The embedded default: the files its NFCT stacks write (JSON with its rotations,
    SQLite), not those of its packet (NFLOG) stacks."""
    from ulogpy.config.load import load_embedded_default

    config = load_embedded_default()
    flows, packets = set(), set()
    for text in config.global_options.stack:
        tokens = [t.strip().split(":") for t in text.split(",")]
        section = config.section(tokens[-1][0])
        where = {e.key: str(e.value) for e in section.entries} if section else {}
        path = where.get("file") or where.get("db")
        if tokens[-1][1] in ("JSON", "SQLITE3") and path:
            nfct = tokens[0][1] == "NFCT" and any(name == "IP2STR" for _, name in tokens)
            (flows if nfct else packets).add(path)
    _, sources, _ = config_sources(None)
    found = {getattr(s, "pattern", None) or getattr(s, "path", None) for s in sources}
    assert flows and found == flows
    assert not packets & found
    assert all(s.rotated for s in sources if isinstance(s, JsonSource))


def test_cli_with_config(tmp_path: Path, capsys) -> None:
    """JSON and SQLite of one config log the same flow: listed once."""
    conf = tmp_path / "c.toml"
    conf.write_text(f'[global]\nstack = ["ct1:NFCT,ip2str1:IP2STR,json1:JSON", '
                    f'"ct1:NFCT,ip2str1:IP2STR,db1:SQLITE3"]\n[json1]\nfile = "{tmp_path}/'
                    f'flows.json"\n[db1]\ndb = "{tmp_path}/flows.db"\ntable = "ulog2_ct"\n')
    write(tmp_path / "flows.json", history())
    store(make_db(tmp_path / "flows.db"), history())
    code = main(["-c", str(conf), "--ip", PUB, "--port", "40000", "--at", str(T0 + 5),
                 "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    (match,) = json.loads(out)
    assert match["inside_ip"] == "10.77.1.2" and match["end"] is not None


def test_cli_config_without_history(tmp_path: Path, capsys) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text('[global]\nstack = ["ct1:NFCT,ip2str1:IP2STR,print1:PRINTFLOW,'
                    'emu1:LOGEMU"]\n[emu1]\nfile = "/dev/null"\n')
    assert main(["-c", str(conf), "--ip", PUB, "--port", "1", "--at", "1"]) == 2
    assert "no NFCT stack writes a history" in capsys.readouterr().err
    assert main(["-c", str(tmp_path / "none.toml"), "--ip", PUB, "--port", "1",
                 "--at", "1"]) == 2
    assert "cannot read configuration file" in capsys.readouterr().err


def test_sqlite_table_found_by_columns(tmp_path: Path) -> None:
    """No ?table=: Debian's example name, any single table with ulogd's ct columns, and
    clear errors for none, several, and Debian's example layout (no reply tuple)."""
    db = make_db(tmp_path / "f.db", table="ulog_ct")
    store(db, history(), table="ulog_ct")
    db.execute("CREATE TABLE ulog_pkt (raw_pktlen INTEGER)")
    db.commit()
    source = parse_source(f"sqlite://{tmp_path}/f.db")
    assert [f.inside_ip for f in rank(source.lookup(QUERIES[0]), QUERIES[0])] == ["10.77.1.2"]
    assert source.table == "ulog_ct"
    db.execute("CREATE TABLE copy1 AS SELECT * FROM ulog_ct")
    db.execute("CREATE TABLE copy2 AS SELECT * FROM ulog_ct")
    db.commit()
    assert parse_source(f"sqlite://{tmp_path}/f.db").lookup(QUERIES[0])  # ulogd's name wins
    db.execute("DROP TABLE ulog_ct")
    db.commit()
    with pytest.raises(LookupFailed, match=r"several tables .*: copy1, copy2; choose one"):
        parse_source(f"sqlite://{tmp_path}/f.db").lookup(QUERIES[0])
    debian = sqlite3.connect(tmp_path / "debian.db")
    debian.executescript(Path("/usr/share/doc/ulogd2/sqlite3.table").read_text())
    debian.close()
    with pytest.raises(LookupFailed, match=r"'ulog_ct' lacks .*reply_ip_daddr_str.*Debian"):
        parse_source(f"sqlite://{tmp_path}/debian.db").lookup(QUERIES[0])
    empty = sqlite3.connect(tmp_path / "empty.db")
    empty.execute("CREATE TABLE other (x INTEGER)")
    empty.close()
    with pytest.raises(LookupFailed, match=r"no table with ulogd's conntrack columns.*other"):
        parse_source(f"sqlite://{tmp_path}/empty.db").lookup(QUERIES[0])
