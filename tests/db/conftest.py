"""Fixtures of the database tests: one throwaway PostgreSQL cluster per session.

Each test makes its own databases inside it (`new_db`), so tests stay independent
while the server starts once.  In-process outputs (`make_output`) are real PGSQL /
SQLITE3 plugin instances configured from an option dict and a key list, as the stack
builder would configure them.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator

import pytest

from tests.db.helpers import OutputHarness
from tests.db.mysql_fixtures import my, new_mydb, ulogd_mysql_schema  # noqa: F401 (fixtures)
from tests.pgcluster import ulogd_schema_sql

_counter = itertools.count()


@pytest.fixture(scope="session")
def ulogd_schema() -> str:
    return ulogd_schema_sql()


@pytest.fixture
def new_db(pg, ulogd_schema):
    """new_db(schema=True) -> conninfo of a fresh database (loaded with ulogd's schema)."""

    def make(schema: bool = True, name: str | None = None) -> str:
        db = name or f"t{next(_counter)}"
        return pg.create_db(db, ulogd_schema if schema else None)

    return make


@pytest.fixture
def harness(tmp_path) -> Iterator[OutputHarness]:
    h = OutputHarness(tmp_path)
    yield h
    h.close()


@pytest.fixture
def db_log(caplog) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="ulogpy")
    return caplog
