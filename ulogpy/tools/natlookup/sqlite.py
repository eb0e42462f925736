"""SQLite history: `sqlite:///abs/path.db[?table=NAME]`, ulogd's `ulog2_ct` columns.

Without `?table=` the table is found by its columns (`discover`: ulogd's `ulog2_ct`,
Debian's example name `ulog_ct`, or any other).
"""

from __future__ import annotations

import os
import sqlite3
import time
import urllib.parse

from ulogpy.tools.natlookup import sql as sql_module
from ulogpy.tools.natlookup.discover import pick_table, sqlite_tables
from ulogpy.tools.natlookup.errors import LookupFailed
from ulogpy.tools.natlookup.flows import Flow, Query
from ulogpy.tools.natlookup.sql import (
    DEFAULT_TABLE,
    SQLITE,
    check_table,
    index_note,
    lookup_sql,
    rows_to_flows,
    truncation_note,
)

PREFIX = "sqlite://"


class SqliteSource:
    """`table` None: found by its columns at the first lookup (`discover`)."""

    def __init__(self, path: str, table: str | None = DEFAULT_TABLE,
                 label: str | None = None):
        self.path = path
        self.table = check_table(table) if table is not None else None
        self.notes: list[str] = []
        self.label = label or self.uri(path, table or DEFAULT_TABLE)

    @staticmethod
    def uri(path: str, table: str) -> str:
        suffix = "" if table == DEFAULT_TABLE else f"?table={table}"
        return f"{PREFIX}{path}{suffix}"

    @classmethod
    def from_uri(cls, text: str) -> SqliteSource:
        parts = urllib.parse.urlsplit(text)
        path = urllib.parse.unquote(parts.path)
        if parts.netloc or not path.startswith("/"):
            raise LookupFailed(
                f"--source {text!r}: give an absolute path, sqlite:///abs/path.db[?table=NAME]"
            )
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        unknown = set(query) - {"table"}
        if unknown:
            raise LookupFailed(f"--source {text!r}: unknown parameter {sorted(unknown)[0]!r};"
                               " only ?table=NAME")
        table = query.get("table", [None])[-1]
        return cls(path, table, label=text)

    def lookup(self, q: Query) -> list[Flow]:
        if not os.path.exists(self.path):
            raise LookupFailed(f"{self.label}: no such file {self.path}")
        try:
            # Read-only, so a wrong path never leaves an empty database behind.
            db = sqlite3.connect(f"file:{urllib.parse.quote(self.path)}?mode=ro", uri=True,
                                 timeout=5.0)
            try:
                if self.table is None:
                    self.table = pick_table(sqlite_tables(db), self.label)
                sql, params = lookup_sql(SQLITE, self.table, q)
                began = time.monotonic()
                cur = db.execute(sql, params)
                columns = [c[0] for c in cur.description]
                rows = cur.fetchall()
                if time.monotonic() - began > sql_module.SLOW_S:
                    plan = [r[3] for r in db.execute(SQLITE.explain + sql, params)]
                    self.notes.extend(index_note(SQLITE, plan, self.label, self.table))
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise LookupFailed(f"{self.label}: {_explain(exc, self.table or '?')}") from None
        self.notes.extend(truncation_note(len(rows), self.label))
        return rows_to_flows(columns, rows, self.label, u32=True)


def _explain(exc: sqlite3.Error, table: str) -> str:
    text = str(exc)
    if "no such table" in text:
        return f"no table {table!r} (not a ulogpy/ulogd flow database? try ?table=NAME)"
    if "no such column" in text:
        return f"table {table!r} lacks a column of ulogd's ulog2_ct layout ({text})"
    if "not a database" in text:
        return "not an SQLite database"
    return text
