"""Which table holds the conntrack history, when the source names none (no `?table=`).

ulogd's own configurations name it differently: `ulog2_ct` in its SQL schemas,
`ulog_ct` in Debian's example ulogd.conf, anything the admin chose.  A table (or
view) is a candidate when it has the columns a lookup reads, ulogd's `ct` columns
with text addresses (IP2STR).  A candidate with one of ulogd's names wins (so a
database that worked with the old default `ulog2_ct` still does); otherwise one
candidate is used, and several are an error that names them, so the user picks one
with `?table=`.
"""

from __future__ import annotations

from collections.abc import Mapping

from ulogpy.tools.natlookup.errors import LookupFailed

#: The columns a lookup cannot do without (the public side is the reply tuple).
LOOKUP_COLUMNS = frozenset({"orig_ip_saddr_str", "orig_l4_sport", "orig_ip_daddr_str",
                            "reply_ip_daddr_str", "reply_l4_dport", "flow_start_sec"})
#: ulogd's usual names, tried (for a clear "lacks a column" error) when nothing matches.
USUAL_NAMES = ("ulog2_ct", "ulog_ct")


def pick_table(tables: Mapping[str, set[str]], label: str) -> str:
    """The conntrack table among `tables` (name -> its lower-case column names)."""
    found = sorted(name for name, cols in tables.items() if LOOKUP_COLUMNS <= cols)
    usual = [name for name in USUAL_NAMES if name in found]
    if len(usual) == 1:  # ulogd's own name wins over copies and scratch tables
        return usual[0]
    if len(found) == 1:
        return found[0]
    found = usual or found
    if found:
        raise LookupFailed(f"{label}: several tables hold ulogd's conntrack columns: "
                           f"{', '.join(found)}; choose one with ?table=NAME")
    for name in USUAL_NAMES:
        if name in tables:
            missing = sorted(LOOKUP_COLUMNS - tables[name])
            hint = (" (Debian's example ulog_ct keeps no reply tuple, so no public address:"
                    " log through IP2STR into ulog2_ct's layout, `ulogpy db init --sqlite`)"
                    if name == "ulog_ct" else "")
            raise LookupFailed(f"{label}: table {name!r} lacks a column of ulogd's ct "
                               f"layout (missing {', '.join(missing)}){hint}")
    shown = ", ".join(sorted(tables)) or "none"
    raise LookupFailed(f"{label}: no table with ulogd's conntrack columns "
                       f"({', '.join(sorted(LOOKUP_COLUMNS))}); tables: {shown}; give "
                       "?table=NAME")


def sqlite_tables(db) -> dict[str, set[str]]:
    names = [r[0] for r in db.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
        "AND name NOT LIKE 'sqlite_%'")]
    return {n: {r[1].lower() for r in db.execute(f'PRAGMA table_info("{n}")')} for n in names}


PG_COLUMNS_QUERY = (
    "SELECT table_schema, table_name, column_name FROM information_schema.columns "
    "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')")


def pg_tables(conn) -> dict[str, set[str]]:
    """schema.table (plain `table` in public) -> columns."""
    out: dict[str, set[str]] = {}
    for schema, table, column in conn.execute(PG_COLUMNS_QUERY):
        name = table if schema == "public" else f"{schema}.{table}"
        out.setdefault(name, set()).add(column.lower())
    return out
