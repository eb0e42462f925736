"""ulogd's `procedure` option, one parser for every SQL dialect (spec 6.3).

| procedure          | kind        | statement                     |
| `INSERT`           | insert      | INSERT INTO <table> (cols) ...|
| `INSERT INTO name` | insert_into | INSERT INTO name (cols) ...   |
| `CALL name`        | call        | CALL name(...)                |
| `name`             | select      | SELECT name(...)              |

The kinds are the same for PostgreSQL and MySQL; only how a name is written
differs, so each dialect passes its own `parse_name` (`pgstatement`,
`mystatement`) and builds its own statement from the result.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

_INSERT_INTO = re.compile(r"^\s*INSERT\s+INTO\s+(.+?)\s*$", re.IGNORECASE | re.DOTALL)
_CALL = re.compile(r"^\s*CALL\s+(.+?)\s*$", re.IGNORECASE | re.DOTALL)

NameParser = Callable[[str], tuple[str, ...]]


class ProcedureError(ValueError):
    pass


@dataclass(frozen=True)
class Procedure:
    """What `procedure` asks for: kind is insert, insert_into, call or select."""

    kind: str
    name: tuple[str, ...] = ()

    @property
    def inserts(self) -> bool:
        return self.kind in ("insert", "insert_into")


def parse_procedure(text: str, parse_name: NameParser) -> Procedure:
    """The kind of `text` and its name, parsed by the dialect's `parse_name`."""
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


def procedure_check(*parsers: Callable[[str], Procedure]) -> Callable[[str], str | None]:
    """An option `check=`: valid when one of `parsers` accepts the text (else the first
    one's message), so DBI accepts what either of its SQL dialects accepts."""

    def check(value: str) -> str | None:
        errors = []
        for parse in parsers:
            try:
                parse(value)
                return None
            except ProcedureError as exc:
                errors.append(str(exc))
        return errors[0]

    return check
