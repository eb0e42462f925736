"""The statement ulogd would send, for each `procedure` (spec 6.3), with bound values.

| procedure          | statement                                          |
| `INSERT`           | INSERT INTO schema.table (cols) VALUES (%s, ...)   |
| `INSERT INTO name` | INSERT INTO name (cols) VALUES (%s, ...)           |
| `CALL name`        | CALL name(%s, ...)  (ulogd 2.0.8 sends CALL twice) |
| `name`             | SELECT name(%s, ...)                               |

Names from the configuration are parsed as SQL identifiers and quoted with
psycopg.sql, so nothing outside a name can get into the statement.  A bare
name is folded to lower case first, as PostgreSQL folds ulogd's unquoted
names (`INSERT_OR_REPLACE_CT` is the function `insert_or_replace_ct`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ulogpy.db import procedure
from ulogpy.db.procedure import Procedure, ProcedureError

__all__ = ["Procedure", "ProcedureError", "build_statement", "parse_name", "parse_procedure"]

if TYPE_CHECKING:  # psycopg is imported when a statement is built, not at start-up
    from psycopg import sql

_BARE = r"[A-Za-z_][A-Za-z0-9_$]*"
_QUOTED = r'"(?:[^"]|"")+"'
_PART = rf"(?:{_BARE}|{_QUOTED})"
_NAME = re.compile(rf"^\s*({_PART})(?:\s*\.\s*({_PART}))?\s*$")


def _ident_part(text: str) -> str:
    if text.startswith('"'):
        return text[1:-1].replace('""', '"')
    return text.lower()


def parse_name(text: str) -> tuple[str, ...]:
    """`a.b` -> ('a', 'b'); bare parts folded to lower case, quoted ones kept."""
    m = _NAME.match(text)
    if not m:
        raise ProcedureError(f"'{text}' is not a (schema-qualified) SQL name")
    return tuple(_ident_part(p) for p in m.groups() if p is not None)


def parse_procedure(text: str) -> Procedure:
    """`procedure` with PostgreSQL's names (lower-cased unless quoted)."""
    return procedure.parse_procedure(text, parse_name)


def build_statement(proc: Procedure, schema: str, table: str,
                    columns: Sequence[str]) -> sql.Composed:
    """The statement for one row; `columns` are the active columns, in table order."""
    from psycopg import sql

    params = sql.SQL(", ").join(sql.Placeholder() * len(columns))
    if proc.inserts:
        target = sql.Identifier(schema, table) if proc.kind == "insert" else \
            sql.Identifier(*proc.name)
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        return sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(target, cols, params)
    verb = sql.SQL("CALL") if proc.kind == "call" else sql.SQL("SELECT")
    return sql.SQL("{} {}({})").format(verb, sql.Identifier(*proc.name), params)
