"""Nothing in an event or a name becomes SQL, and the password never reaches the log.

ulogd builds its statements by escaping values into the text (spec 8.4 O12); ulogpy
binds every value and quotes every configured name.  Hostile log prefixes and
interface names are stored verbatim; a hostile table or schema name finds no table
and runs nothing; a hostile procedure is refused at configure time.
"""

from __future__ import annotations

import pytest
from ulogpy.plugins.output.pgsql import PGSQL

from tests.db.helpers import count, query, stack_keys, wait_for
from ulogpy.db.pgstatement import ProcedureError, parse_procedure
from ulogpy.db.redact import Redactor, secrets_of_conninfo

PACKET_KEYS = stack_keys("NFLOG", "BASE", "IFINDEX", "IP2STR", "HWHDR")
FLOW_KEYS = stack_keys("NFCT", "IP2STR")
HOSTILE = [
    "x'); DROP TABLE ulog2; --",
    "'; DELETE FROM ulog2_ct; SELECT ('",
    "\\'; DROP TABLE mac; --",
    'eth0"; DROP TABLE tcp; --',
    "$1, $2); DROP TABLE udp; --",
    "%s%s%s%(x)s",
]


def _base(pg, conninfo: str) -> dict:
    return {"db": conninfo.split("dbname=")[1].split()[0], "host": str(pg.sockdir),
            "port": pg.port, "user": "postgres"}


def _packet(prefix: str, ifname: str, n: int) -> dict:
    return {"oob.time.sec": 1700000000 + n, "oob.time.usec": n, "oob.hook": 1,
            "oob.prefix": prefix, "oob.mark": 0, "oob.in": ifname, "oob.out": "",
            "oob.family": 2, "ip.saddr.str": "10.1.2.3", "ip.daddr.str": "10.3.2.1",
            "ip.protocol": 17, "udp.sport": 1000 + n, "udp.dport": 53, "udp.len": 20,
            "raw.type": 772, "mac.str": "00:00:00:00:00:00", "raw.label": 0}


def test_hostile_prefixes_and_interface_names_are_stored_verbatim(pg, new_db, harness):
    conninfo = new_db()
    out = harness.make(PGSQL, {**_base(pg, conninfo), "table": "ulog",
                               "procedure": "INSERT_PACKET_FULL"}, PACKET_KEYS)
    for n, text in enumerate(HOSTILE):
        out.write(_packet(text[:31], text[:31], n))
    out.flush()
    wait_for(lambda: out.counters.get("written") + out.counters.get("rejected")
             == len(HOSTILE), what="hostile rows handled")
    assert out.counters.get("rejected") == 0
    rows = query(conninfo, "SELECT oob_prefix, oob_in FROM ulog2 ORDER BY _id")
    assert rows == [(t[:31], t[:31]) for t in HOSTILE]
    assert count(conninfo, "udp") == len(HOSTILE)
    for table in ("ulog2", "ulog2_ct", "mac", "tcp", "udp"):
        assert query(conninfo, "SELECT to_regclass(%s) IS NOT NULL", (table,)) == [(True,)]


def test_hostile_table_and_schema_names_run_nothing(pg, new_db, harness, db_log):
    conninfo = new_db()
    before = count(conninfo, "ulog2_ct")
    outs = [
        harness.make(PGSQL, {**_base(pg, conninfo), "table": 'ulog2_ct"; DROP TABLE ulog2;--',
                             "procedure": "INSERT"}, FLOW_KEYS, "bad1"),
        harness.make(PGSQL, {**_base(pg, conninfo), "table": "ulog2_ct",
                             "schema": "public; DROP TABLE ulog2", "procedure": "INSERT"},
                     FLOW_KEYS, "bad2"),
    ]
    for out in outs:
        out.write({"ct.event": 1, "orig.l4.sport": 1})
        out.flush()
    wait_for(lambda: "bad1" in db_log.text and "bad2" in db_log.text, what="errors logged")
    assert "not found" in db_log.text
    assert query(conninfo, "SELECT to_regclass('ulog2') IS NOT NULL") == [(True,)]
    assert count(conninfo, "ulog2_ct") == before
    assert all(o.counters.get("written") == 0 for o in outs)


def test_a_quoted_table_name_is_used_exactly(pg, new_db, harness):
    conninfo = new_db(schema=False)
    name = conninfo.split("dbname=")[1].split()[0]
    pg.psql(name, 'CREATE TABLE "odd ""name""; x" (ct_event integer, orig_l4_sport integer)')
    out = harness.make(PGSQL, {**_base(pg, conninfo), "table": 'odd "name"; x',
                               "procedure": "INSERT"}, FLOW_KEYS)
    out.write({"ct.event": 4, "orig.l4.sport": 80})
    out.flush()
    wait_for(lambda: out.counters.get("written") == 1, what="row stored")
    assert query(conninfo, 'SELECT ct_event, orig_l4_sport FROM "odd ""name""; x"') == \
        [(4, 80)]


@pytest.mark.parametrize("text", [
    "INSERT_CT(1); DROP TABLE ulog2", "f(); --", "INSERT INTO t; DROP TABLE x",
    "CALL p(1)", "a.b.c", "",
])
def test_hostile_procedures_are_refused(text):
    with pytest.raises(ProcedureError):
        parse_procedure(text)


def test_procedure_names_fold_like_postgresql():
    assert parse_procedure("INSERT_OR_REPLACE_CT").name == ("insert_or_replace_ct",)
    assert parse_procedure('myschema."MixedCase"').name == ("myschema", "MixedCase")
    assert parse_procedure("insert").kind == "insert"
    assert parse_procedure("INSERT INTO Foo.Bar").name == ("foo", "bar")
    assert parse_procedure("CALL do_it").kind == "call"


SECRET = "S3cr3t-'pw' x"


def test_password_never_logged(pg, new_db, harness, db_log):
    pg.add_password_role("ulogwriter", SECRET)
    conninfo = new_db()
    db = conninfo.split("dbname=")[1].split()[0]
    base = {"db": db, "host": str(pg.sockdir), "port": pg.port, "table": "ulog2_ct",
            "procedure": "INSERT_CT"}
    good = harness.make(PGSQL, {**base, "user": "ulogwriter", "pass": SECRET}, FLOW_KEYS,
                        "good")
    wrong = harness.make(PGSQL, {**base, "user": "ulogwriter", "pass": SECRET + "-wrong"},
                         FLOW_KEYS, "wrong")
    broken = harness.make(PGSQL, {**base, "user": "x", "connstring":
                                  f"host={pg.sockdir} password={SECRET[:6]} dbname"},
                          FLOW_KEYS, "broken")
    uri = harness.make(PGSQL, {**base, "user": "x", "connstring":
                               f"postgresql://ulogwriter:{SECRET[:6]}@/nosuchdb?host="
                               f"{pg.sockdir}&port={pg.port}"}, FLOW_KEYS, "uri")
    for out in (good, wrong, broken, uri):
        out.write({"oob.family": 2, "ct.event": 1, "orig.ip.saddr.str": "10.0.0.1"})
        out.flush()
    wait_for(lambda: good.counters.get("written") == 1, what="the right password works")
    wait_for(lambda: all(f"{n}:PGSQL: unable to connect" in db_log.text
                         for n in ("wrong", "broken", "uri")), what="three failures logged")
    assert "password authentication failed" in db_log.text
    text = db_log.text
    for secret in (SECRET, SECRET[:6], SECRET + "-wrong"):
        assert secret not in text
    assert "S3cr3t" not in text


def test_redactor_masks_conninfo_and_uri_forms():
    conninfo = "host=h password='a b\\'c' user=u"
    redact = Redactor(secrets_of_conninfo(conninfo) + ["plain"])
    assert "a b" not in redact(f"bad conninfo: {conninfo}")
    assert redact("postgresql://u:topsecret@h/db") == "postgresql://u:***@h/db"
    assert redact("password=xyz dbname=d") == "password=*** dbname=d"
    assert redact("the word plain") == "the word ***"
