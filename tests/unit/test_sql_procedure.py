"""`procedure`: one parser of the kinds, each SQL dialect's own names (spec 6.3).

PGSQL, MYSQL and DBI share `ulogpy.db.procedure`; these pin what must stay the
same across dialects (the kinds, what is refused) and what must not (names).
"""

from __future__ import annotations

import pytest

from ulogpy.db import mystatement, pgstatement
from ulogpy.db.procedure import ProcedureError, procedure_check

DIALECTS = (pgstatement, mystatement)


@pytest.mark.parametrize("text, kind", [
    ("INSERT", "insert"), (" insert ", "insert"), ("INSERT INTO ulog2_ct", "insert_into"),
    ("insert into db.t", "insert_into"), ("CALL do_it", "call"),
    ("INSERT_OR_REPLACE_CT", "select"), ("s.f", "select"),
])
def test_every_dialect_reads_the_same_kind(text: str, kind: str) -> None:
    assert {d.parse_procedure(text).kind for d in DIALECTS} == {kind}


@pytest.mark.parametrize("text", [
    "INSERT_CT(1); DROP TABLE ulog2", "f(); --", "INSERT INTO t; DROP TABLE x",
    "CALL p(1)", "a.b.c", "", "INSERT INTO",
])
def test_every_dialect_refuses_what_is_not_a_name(text: str) -> None:
    for dialect in DIALECTS:
        with pytest.raises(ProcedureError):
            dialect.parse_procedure(text)


def test_names_follow_each_dialect() -> None:
    assert pgstatement.parse_procedure("INSERT INTO Foo.Bar").name == ("foo", "bar")
    assert mystatement.parse_procedure("INSERT INTO Foo.Bar").name == ("Foo", "Bar")
    assert pgstatement.parse_procedure('"Mixed"').name == ("Mixed",)
    assert mystatement.parse_procedure("CALL `odd``name`").name == ("odd`name",)
    with pytest.raises(ProcedureError, match="MySQL name"):
        mystatement.parse_procedure('"Mixed"')
    with pytest.raises(ProcedureError, match="SQL name"):
        pgstatement.parse_procedure("`odd`")


def test_mysql_statements_quote_every_name() -> None:
    proc = mystatement.parse_procedure("CALL `we%ird`")
    assert mystatement.build_statement(proc, "t", ["a", "b"]) == "CALL `we%%ird`(%s, %s)"
    insert = mystatement.parse_procedure("INSERT")
    assert mystatement.build_statement(insert, "ulog", ["x`y"]) == \
        "INSERT INTO `ulog` (`x``y`) VALUES (%s)"


def test_a_check_accepts_what_one_of_its_dialects_accepts() -> None:
    pg_only = procedure_check(pgstatement.parse_procedure)
    either = procedure_check(pgstatement.parse_procedure, mystatement.parse_procedure)
    assert pg_only("CALL `odd`") is not None and "SQL name" in pg_only("CALL `odd`")
    assert either("CALL `odd`") is None  # DBI: valid for dbtype mysql
    assert either("INSERT") is None
    refused = either("f(); --")
    assert refused == pg_only("f(); --")  # the first dialect's message
