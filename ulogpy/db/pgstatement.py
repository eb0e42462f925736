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
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # psycopg is imported when a statement is built, not at start-up
    from psycopg import sql

_BARE = r"[A-Za-z_][A-Za-z0-9_$]*"
_QUOTED = r'"(?:[^"]|"")+"'
_PART = rf"(?:{_BARE}|{_QUOTED})"
_NAME = re.compile(rf"^\s*({_PART})(?:\s*\.\s*({_PART}))?\s*$")
_INSERT_INTO = re.compile(r"^\s*INSERT\s+INTO\s+(.+?)\s*$", re.IGNORECASE | re.DOTALL)
_CALL = re.compile(r"^\s*CALL\s+(.+?)\s*$", re.IGNORECASE | re.DOTALL)


class ProcedureError(ValueError):
    pass


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


@dataclass(frozen=True)
class Procedure:
    """What `procedure` asks for: kind is insert, insert_into, call or select."""

    kind: str
    name: tuple[str, ...] = ()


def parse_procedure(text: str) -> Procedure:
    stripped = text.strip()
    if stripped.upper() == "INSERT":
        return Procedure("insert")
    if re.match(r"INSERT\s", stripped, re.IGNORECASE):
        m = _INSERT_INTO.match(stripped)
        if not m:
            raise ProcedureError(f"'{text}' is neither INSERT nor INSERT INTO <table>")
        return Procedure("insert_into", parse_name(m.group(1)))
    if re.match(r"CALL\s", stripped, re.IGNORECASE):
        m = _CALL.match(stripped)
        if not m:
            raise ProcedureError(f"'{text}' names no procedure after CALL")
        return Procedure("call", parse_name(m.group(1)))
    return Procedure("select", parse_name(stripped))


def build_statement(proc: Procedure, schema: str, table: str,
                    columns: Sequence[str]) -> sql.Composed:
    from psycopg import sql
    """The statement for one row; `columns` are the active columns, in table order."""
    params = sql.SQL(", ").join(sql.Placeholder() * len(columns))
    if proc.kind in ("insert", "insert_into"):
        target = sql.Identifier(schema, table) if proc.kind == "insert" else \
            sql.Identifier(*proc.name)
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        return sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(target, cols, params)
    verb = sql.SQL("CALL") if proc.kind == "call" else sql.SQL("SELECT")
    return sql.SQL("{} {}({})").format(verb, sql.Identifier(*proc.name), params)
