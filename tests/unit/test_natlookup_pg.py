"""nat-lookup against PostgreSQL: ulogd's own schema and functions write the rows.

The rows come from ulogd's pgsql-ulogd2.sql functions, called with the arguments
ulogd's PGSQL plugin renders (spec 6.2/6.3): INSERT_OR_REPLACE_CT for NEW/DESTROY
records, INSERT_CT for hash-mode records.  The answers must equal those from the
same history read as JSON, and the query must be served by the lookup index.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.pgcluster import PgCluster, ulogd_schema_sql
from tests.unit.test_natlookup import PUB, T0, nfct_line
from tests.unit.test_natlookup_sources import CT_COLUMNS, QUERIES, history, row_of, summary
from ulogpy.tools.natlookup.cli import main
from ulogpy.tools.natlookup.errors import LookupFailed
from ulogpy.tools.natlookup.flows import Query, rank
from ulogpy.tools.natlookup.jsonlog import JsonSource
from ulogpy.tools.natlookup.sources import parse_source
from ulogpy.tools.natlookup.sql import POSTGRESQL, index_sql, lookup_sql


def uri(pg: PgCluster, db: str, **query: str) -> str:
    extra = "".join(f"&{k}={v}" for k, v in query.items())
    return f"postgresql:///{db}?host={pg.sockdir}&port={pg.port}&user=postgres{extra}"


def literal(value) -> str:
    """An argument as ulogd's PGSQL writes it into the statement (spec 6.2)."""
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(int(value))


def ulogd_call(line: str, function: str = "INSERT_OR_REPLACE_CT") -> str:
    row = row_of(line)
    return f"SELECT {function}({','.join(literal(row[c]) for c in CT_COLUMNS)});"


@pytest.fixture(scope="module")
def ulogd_db(pg: PgCluster) -> str:
    """ulogd's schema, the lookup index, and history() written by ulogd's functions."""
    pg.create_db("ulogd", ulogd_schema_sql())
    pg.psql("ulogd", index_sql("ulog2_ct") + ";\n" + "\n".join(ulogd_call(x)
                                                                 for x in history()))
    return "ulogd"


def test_rows_from_ulogd_functions_answer_like_json(pg, ulogd_db, tmp_path: Path) -> None:
    path = tmp_path / "flows.json"
    path.write_text("\n".join(history()) + "\n")
    js = JsonSource(str(path))
    source = parse_source(uri(pg, ulogd_db))
    for q in QUERIES:
        assert summary(rank(source.lookup(q), q)) == summary(rank(js.lookup(q), q)), q


def test_hash_mode_rows_from_insert_ct(pg, tmp_path: Path) -> None:
    """INSERT_CT: one row per flow at its end (NFCT hash mode)."""
    lines = [nfct_line(4, ct_id=None, start=T0, end=T0 + 10),
             nfct_line(4, ct_id=None, inside=("10.77.1.3", 5), start=T0 + 11, end=T0 + 12)]
    pg.create_db("hashmode", ulogd_schema_sql())
    pg.psql("hashmode", "\n".join(ulogd_call(x, "INSERT_CT") for x in lines))
    q = Query(ip=PUB, port=40000, at=T0 + 11.5)
    assert summary(rank(parse_source(uri(pg, "hashmode")).lookup(q), q)) == [
        ("10.77.1.3", 5, 40000, 6, T0 + 11, T0 + 12), ("10.77.1.2", 40000, 40000, 6, T0,
                                                        T0 + 10)]


def test_query_is_served_by_the_lookup_index(pg, ulogd_db) -> None:
    """With single-column indexes on the address and the port present too, on a table
    big enough for the planner to care: both branches seek the lookup index on address,
    port and start (plain or bitmap scan, as the planner likes), never a seq scan."""
    import psycopg

    pg.psql(ulogd_db, """
        CREATE TABLE big AS SELECT * FROM ulog2_ct WITH NO DATA;
        INSERT INTO big (oob_family, orig_ip_saddr_str, orig_ip_daddr_str, orig_ip_protocol,
            orig_l4_sport, orig_l4_dport, reply_ip_saddr_str, reply_ip_daddr_str,
            reply_ip_protocol, reply_l4_sport, reply_l4_dport, flow_start_sec,
            flow_start_usec, flow_end_sec, flow_end_usec, ct_event)
        SELECT 2, ('10.0.' || (i % 200) || '.' || (i % 250 + 1))::inet, '10.9.9.9', 6,
            i % 60000, 443, '10.9.9.9', ('10.1.2.' || (i % 4 + 1))::inet, 6, 443,
            1024 + i % 500, 1795000000 + i, 0, 1795000000 + i + 30, 0, 4
        FROM generate_series(1, 60000) AS i;
        CREATE INDEX big_nat_lookup ON big (reply_ip_daddr_str, reply_l4_dport, flow_start_sec);
        CREATE INDEX big_daddr ON big (reply_ip_daddr_str);
        CREATE INDEX big_dport ON big (reply_l4_dport);
        ANALYZE big;
    """)
    with psycopg.connect(pg.dsn(ulogd_db), autocommit=True) as conn:
        for q in (Query(ip="10.1.2.1", port=1100, at=1795030000),
                  Query(ip="10.1.2.1", port=1100, at=1795030000, proto=6,
                        remote_ip="10.9.9.9", remote_port=443)):
            sql, params = lookup_sql(POSTGRESQL, "big", q)
            plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + sql, params))
            conds = [line for line in plan.splitlines() if "Index Cond" in line]
            assert "Seq Scan" not in plan and len(conds) == 2, plan
            assert "Scan using big_nat_lookup" in plan or "Scan on big_nat_lookup" in plan
            for cond, start in zip(conds, ("flow_start_sec <=", "flow_start_sec IS NULL"),
                                   strict=True):
                assert "reply_ip_daddr_str =" in cond and "reply_l4_dport =" in cond, plan
                assert start in cond, plan


def test_table_override(pg, ulogd_db, monkeypatch) -> None:
    """`?table=`; a copy without the lookup index: a slow lookup says what is missing."""
    from ulogpy.tools.natlookup import sql

    pg.psql(ulogd_db, "CREATE TABLE nat_copy AS SELECT * FROM ulog2_ct;")
    monkeypatch.setattr(sql, "SLOW_S", -1.0)  # every lookup counts as slow
    q = QUERIES[0]
    source = parse_source(uri(pg, ulogd_db, table="nat_copy"))
    found = rank(source.lookup(q), q)
    assert found[0].inside_ip == "10.77.1.2"
    assert found[0].source == uri(pg, ulogd_db, table="nat_copy")
    assert [n for n in source.notes if "read the whole table nat_copy" in n
            and "ulogpy db init" in n]


def test_errors_are_clear_and_hide_the_password(pg, ulogd_db, capsys) -> None:
    with pytest.raises(LookupFailed, match="no table 'nosuch'"):
        parse_source(uri(pg, ulogd_db, table="nosuch")).lookup(QUERIES[0])
    with pytest.raises(LookupFailed, match="cannot reach the database"):
        parse_source(uri(pg, "nosuchdb")).lookup(QUERIES[0])
    pg.psql(ulogd_db, "CREATE TABLE odd (reply_ip_daddr_str inet);")
    with pytest.raises(LookupFailed, match="ulog2_ct layout"):
        parse_source(uri(pg, ulogd_db, table="odd")).lookup(QUERIES[0])
    down = (f"postgresql://ulog:hunter2@/ulogd?host={pg.sockdir}&port={pg.port + 1}"
            "&password=hunter3")
    code = main(["--ip", PUB, "--port", "40000", "--at", str(T0), "--source", down])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert "cannot reach the database" in err
    assert "hunter" not in err and "ulog@" in err


def test_cli_json_from_postgresql(pg, ulogd_db, capsys) -> None:
    code = main(["--ip", PUB, "--port", "40000", "--at", str(T0 + 45), "--source",
                 uri(pg, ulogd_db), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    first = json.loads(out)[0]
    # Held at +45 by the .3 flow reopened at +40 (still open) and by the UDP flow
    # (open since +13): the newer first.
    assert (first["inside_ip"], first["proto"], first["end"]) == ("10.77.1.3", "tcp", None)
    assert first["start"] == "2026-11-26T21:37:20.000000Z"
