"""The statement ulogd's MYSQL would send, for each `procedure` (spec 6.3), with bound values.

| procedure          | statement                                          |
| `INSERT`           | INSERT INTO `table` (cols) VALUES (%s, ...)        |
| `INSERT INTO name` | INSERT INTO name (cols) VALUES (%s, ...)           |
| `CALL name`        | CALL name(%s, ...)  (ulogd 2.0.8 sends CALL twice) |
| `name`             | SELECT name(%s, ...)                               |

The kinds are those of every dialect (`procedure`); only the names differ:
MySQL quotes with backticks and does not fold case (table names are
case-sensitive on Linux), and ulogd's MYSQL has no schema prefix.  Names are
parsed and quoted, so nothing outside a name gets into the statement.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ulogpy.db import procedure
from ulogpy.db.procedure import Procedure, ProcedureError

_PART = r"(?:[A-Za-z0-9_$]+|`(?:[^`]|``)+`)"
_NAME = re.compile(rf"^\s*({_PART})(?:\s*\.\s*({_PART}))?\s*$")


def parse_name(text: str) -> tuple[str, ...]:
    """`db.name` -> ('db', 'name'), backticks removed, case kept."""
    m = _NAME.match(text)
    if not m:
        raise ProcedureError(f"'{text}' is not a (database-qualified) MySQL name")
    return tuple(p[1:-1].replace("``", "`") if p.startswith("`") else p
                 for p in m.groups() if p is not None)


def parse_procedure(text: str) -> Procedure:
    """`procedure` with MySQL's names (backticks, case kept)."""
    return procedure.parse_procedure(text, parse_name)


def quote(*parts: str) -> str:
    """Backtick-quoted, with `%` doubled: the statement is a PyMySQL format string."""
    return ".".join("`" + p.replace("`", "``").replace("%", "%%") + "`" for p in parts)


def build_statement(proc: Procedure, table: str, columns: Sequence[str]) -> str:
    """The statement for one row (PyMySQL `%s` parameters); `columns` are the active ones."""
    params = ", ".join(["%s"] * len(columns))
    if proc.inserts:
        target = quote(table) if proc.kind == "insert" else quote(*proc.name)
        cols = ", ".join(quote(c) for c in columns)
        return f"INSERT INTO {target} ({cols}) VALUES ({params})"
    verb = "CALL" if proc.kind == "call" else "SELECT"
    return f"{verb} {quote(*proc.name)}({params})"
