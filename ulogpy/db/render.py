"""Turning a record's values into database values, chosen per key type at configure time.

PostgreSQL: ulogd writes each value as SQL text (spec 6.2); ulogpy sends
the same text as a bound parameter of unknown type, so the server converts
it exactly as it would convert ulogd's literal (`'0'` into a boolean,
`'10.0.0.1'` into inet, ...) and nothing in a value can become SQL.

MySQL: PyMySQL turns each bound value into the literal ulogd would write:
integers, booleans and addresses as numbers, strings quoted, and IP2BIN's
`0x...` text (which ulogd writes unquoted, a hex literal) as the same bytes.

SQLite: ulogd binds by key type but stores unsigned 32-bit values as
signed (spec 6.7, O7); here integers keep their value.  Addresses keep
ulogd's representation (the value slot read as an integer) so existing
tables stay consistent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ulogpy.core.codegen import define
from ulogpy.core.keys import KeyType
from ulogpy.fastpath import compiled

Render = Callable[[Any], Any]
#: A dialect: the function giving a key type's rendering (None: the value is NULL).
Renderer = Callable[[KeyType], Render | None]
_INTS = {KeyType.INT8, KeyType.INT16, KeyType.INT32, KeyType.INT64,
         KeyType.UINT8, KeyType.UINT16, KeyType.UINT32, KeyType.UINT64}


def _c_string(value: Any) -> str:
    """A C string ends at its first NUL, as ulogd's copy does."""
    text = value if isinstance(value, str) else str(value)
    cut = text.find("\0")
    return text if cut < 0 else text[:cut]


def _pg_bool(value: Any) -> str:
    return "1" if value else "0"


def _slot32(value: Any) -> int:
    """ulogd prints the address slot's first 32 bits as a host-order unsigned integer."""
    return int.from_bytes(bytes(value[:4]), "little")


def _pg_ipaddr(value: Any) -> str:
    return str(_slot32(value))


def _my_rawstr(value: Any) -> Any:
    """ulogd writes a RAWSTR unquoted: IP2BIN's `0x<hex>` is a binary literal."""
    text = _c_string(value)
    if text[:2] in ("0x", "0X"):
        try:
            return bytes.fromhex(text[2:])
        except ValueError:
            pass
    return text


def _bool(value: Any) -> int:
    return 1 if value else 0


_I64_MAX = (1 << 63) - 1


def _sqlite_int(value: Any) -> Any:
    value = int(value)
    # SQLite integers are signed 64-bit: a larger unsigned value is kept as its digits.
    return value if value <= _I64_MAX else str(value)


def _sqlite_ipaddr(value: Any) -> int:
    """ulogd's SQLITE3 reads the 64-bit start of the address slot (spec 6.7)."""
    return int.from_bytes(bytes(value[:8]), "little", signed=True)


def _dialect(*, ints: Render, boolean: Render, ipaddr: Render, string: Render,
             rawstr: Render | None = None) -> Renderer:
    """One dialect's renderings by key type; RAW and the rest have none (ulogd writes
    nothing there and breaks its statement; here: NULL)."""
    table: dict[KeyType, Render] = {t: ints for t in _INTS}
    table |= {KeyType.BOOL: boolean, KeyType.IPADDR: ipaddr, KeyType.STRING: string,
              KeyType.RAWSTR: rawstr or string}
    return table.get


#: PostgreSQL: the text ulogd would write for each value.
pg_renderer = _dialect(ints=str, boolean=_pg_bool, ipaddr=_pg_ipaddr, string=_c_string)
#: MySQL: the value PyMySQL sends as the literal ulogd's MYSQL would write (spec 6.2).
my_renderer = _dialect(ints=int, boolean=_bool, ipaddr=_slot32, string=_c_string,
                       rawstr=_my_rawstr)
#: SQLite as ulogd's SQLITE3 binds, but integers keep their value.
sqlite_renderer = _dialect(ints=_sqlite_int, boolean=int, ipaddr=_sqlite_ipaddr,
                           string=_c_string)
#: ulogd's DBI writes SQL text (spec 6.2) that SQLite converts by column affinity:
#: integers keep their value, booleans are 0/1, addresses the 32-bit slot as unsigned.
dbi_sqlite_renderer = _dialect(ints=_sqlite_int, boolean=int, ipaddr=_slot32,
                               string=_c_string)


#: Renderings whose common case is inlined in a row builder: the test a value passes to
#: be stored as it is (the rendering would return it unchanged), written once for the
#: generated Python builder and named once for the compiled one (`_fastpath.RowBuild`'s
#: ROW_* tests, which check the same thing).
_AS_IS: dict[Render, tuple[str, str]] = {
    _sqlite_int: ("{first}.__class__ is int and -_I64_MAX <= {v} <= _I64_MAX", "ROW_I64"),
    _c_string: ("{first}.__class__ is str and '\\0' not in {v}", "ROW_STR"),
    int: ("{first}.__class__ is int", "ROW_INT"),
}


def row_builder(columns: list[tuple[str, Render | None]]) -> Callable[[dict], tuple]:
    """A function from a record to the tuple of column values (None where absent).

    It gives what ``tuple(None if v is None else render(v) for each column)`` gives,
    with the rendering's common case inline (`_AS_IS`), since this runs for every row:
    the compiled `RowBuild` where the fast path is built, else a generated function.
    """
    pure = python_row_builder(columns)
    if compiled is None:
        return pure
    spec = []
    for key, render in columns:
        test = "ROW_NULL" if render is None else _AS_IS.get(render, ("", "ROW_CALL"))[1]
        spec.append((key, getattr(compiled, test), render))
    return compiled.RowBuild(tuple(spec), pure)


def python_row_builder(columns: list[tuple[str, Render | None]]) -> Callable[[dict], tuple]:
    """`row_builder` in Python, generated (`ulogpy.core.codegen`): one expression per
    column."""
    scope: dict[str, Any] = {"_I64_MAX": _I64_MAX}
    items = []
    for i, (key, render) in enumerate(columns):
        if render is None:
            items.append("None")
            continue
        scope[f"_r{i}"] = render
        scope[f"_k{i}"] = key
        v = f"_{i}"
        plain = f"None if {v} is None else _r{i}({v})"
        test = _AS_IS.get(render)
        if test is None:
            items.append(f"None if ({v} := get(_k{i})) is None else _r{i}({v})")
        else:
            first = f"({v} := get(_k{i}))"
            items.append(f"{v} if {test[0].format(first=first, v=v)} else {plain}")
    lines = ["def build(record):", "    get = record.get", "    return ("]
    lines += [f"        {item}," for item in items]
    lines.append("    )")
    return define(lines, "build", "row builder", scope)
