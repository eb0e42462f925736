"""Column discovery results and ulogd's column-to-key mapping (spec 6.1).

A column name becomes a key name by replacing every `_` with `.`, cut to
31 characters.  When the first column's name starts with `_` (the serial
id of ulogd's tables) it is inactive: no value is sent for it.  Every other
column must name a key of the stack.  ulogd's DBI leaves out the first
column whatever its name (`first_is_id`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ulogpy.core.keys import Key, KeyType

#: ulogd's key names are at most 31 characters.
MAX_KEY_LEN = 31


def column_key(column: str) -> str:
    """`ip_saddr_str` -> `ip.saddr.str`, as ulogd maps a column to its input key."""
    return column.replace("_", ".")[:MAX_KEY_LEN]


class ColumnError(Exception):
    """The table does not fit the stack (a column with no key)."""


@dataclass(frozen=True, slots=True)
class Column:
    """One active column: its name in the table and the stack key that fills it."""

    name: str
    key: str
    type: KeyType


def map_columns(columns: Sequence[str], stack_keys: Sequence[Key],
                first_is_id: bool = False) -> list[Column]:
    """The active columns, in table order, each bound to its key.

    Raises `ColumnError` with ulogd's wording when a column has no key.
    """
    types = {k.name: k.type for k in stack_keys}
    active: list[Column] = []
    for pos, col in enumerate(columns):
        key = column_key(col)
        if pos == 0 and (first_is_id or col.startswith("_")):
            continue
        if key not in types:
            raise ColumnError(f"cannot find key `{key}' in stack (column {col})")
        active.append(Column(col, key, types[key]))
    if not active:
        raise ColumnError("the table has no column to write")
    return active
