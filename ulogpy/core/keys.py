"""Typed keys, as ulogd declares them.

A key is a name with a type.  Plugins declare the keys they take and give in
tables of `Key`; the stack builder binds each input to the nearest upstream
output of the same name.  At run time a record is a plain dict from key name
to value: a key that is absent is "invalid" in ulogd's sense, so the reset
between events is free (every event gets a new dict).

Value representation per type: integers and booleans are `int`, strings are
`str`, IP addresses are the raw address bytes (4 or 16, network order),
raw data is `bytes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class KeyType(Enum):
    """Key types with the label `ulogd -i` prints for each."""

    INT8 = "int 8"
    INT16 = "int 16"
    INT32 = "int 32"
    INT64 = "int 64"
    UINT8 = "unsigned int 8"
    UINT16 = "unsigned int 16"
    UINT32 = "unsigned int 32"
    UINT64 = "unsigned int 64"
    BOOL = "boolean"
    IPADDR = "IP addr"
    STRING = "string"
    RAW = "raw data"
    RAWSTR = "rawstr"
    NONE = "none"

    @property
    def label(self) -> str:
        """The text ulogd prints for this type; unknown types print 'Unknown type'."""
        if self in (KeyType.RAWSTR, KeyType.NONE):
            return "Unknown type"
        return self.value

    @property
    def is_integer(self) -> bool:
        return self in _INTEGER_TYPES


_INTEGER_TYPES = frozenset(
    {
        KeyType.INT8, KeyType.INT16, KeyType.INT32, KeyType.INT64,
        KeyType.UINT8, KeyType.UINT16, KeyType.UINT32, KeyType.UINT64, KeyType.BOOL,
    }
)

U8, U16, U32, U64 = KeyType.UINT8, KeyType.UINT16, KeyType.UINT32, KeyType.UINT64
BOOL, IPADDR, STRING, RAW = KeyType.BOOL, KeyType.IPADDR, KeyType.STRING, KeyType.RAW


@dataclass(frozen=True, slots=True)
class Key:
    """One key of a plugin's input or output template.

    `optional` matters for inputs only: an optional input may stay unbound.
    `cim_name` is the alternate field name JSON uses (`src_ip`, `dest_port`, ...).
    `ulogd=False` marks a key of ulogpy's own, which `-i` marks.
    """

    name: str
    type: KeyType
    optional: bool = False
    cim_name: str | None = None
    ulogd: bool = True

    @property
    def info_line(self) -> str:
        """The `Key:` line of `-i` output."""
        suffix = ", optional" if self.optional else ""
        mark = "" if self.ulogd else "  [ulogpy]"
        return f"\tKey: {self.name} ({self.type.label}{suffix}){mark}"


def keys(*specs: tuple | Key) -> tuple[Key, ...]:
    """Build a key table from compact `(name, type[, optional[, cim_name]])` rows (or Keys)."""
    return tuple(spec if isinstance(spec, Key) else Key(*spec) for spec in specs)
