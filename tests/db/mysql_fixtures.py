"""Fixtures of the MySQL / DBI tests: one throwaway MariaDB server per session.

Imported by the test modules that need it (`from tests.db.mysql_fixtures import my,
new_mydb`), so other tests never start the server.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from tests.mariadb import MariaDB, mariadb_skip_reason, ulogd_mysql_schema_sql

_counter = itertools.count()
#: An NFLOG packet stack into ulogd's MySQL schema (INSERT_PACKET_FULL), for ulogd and
#: ulogpy alike: `{group}` and `{db}` to fill in.
PKT_CONF = """\
[global]
loglevel=3
stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2bin1:IP2BIN,mac2str1:HWHDR,my1:MYSQL
[log1]
group={group}
[my1]
db="{db}"
host="localhost"
user="root"
pass=""
table="ulog"
procedure="INSERT_PACKET_FULL"
"""


@pytest.fixture(scope="session")
def my() -> Iterator[MariaDB]:
    reason = mariadb_skip_reason()
    if reason:
        pytest.skip(reason)
    with MariaDB() as server:
        yield server


@pytest.fixture(scope="session")
def ulogd_mysql_schema() -> str:
    return ulogd_mysql_schema_sql()


@pytest.fixture
def new_mydb(my, ulogd_mysql_schema):
    """new_mydb(schema=True) -> name of a fresh database (loaded with ulogd's schema)."""

    def make(schema: bool = True, name: str | None = None) -> str:
        return my.create_db(name or f"m{next(_counter)}", ulogd_mysql_schema if schema
                            else None)

    return make


def my_table_rows(my: MariaDB, db: str, table: str, drop: tuple[str, ...] = ()) -> list[tuple]:
    """Every row as a tuple of text values (binary as hex, NULL as None), sorted."""
    cols = [r[0] for r in my.query(
        db, "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
        "AND table_name = %s ORDER BY ordinal_position", (db, table))]
    keep = [c for c in cols if c not in drop]
    rows = my.query(db, f"SELECT {', '.join('`' + c + '`' for c in keep)} FROM `{table}`")
    text = [tuple(None if v is None else v.hex() if isinstance(v, bytes) else str(v)
                  for v in r) for r in rows]
    return sorted(text, key=lambda r: tuple("" if v is None else v for v in r))
