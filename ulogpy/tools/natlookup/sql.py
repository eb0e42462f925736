"""The lookup query, written once for SQLite, PostgreSQL and MySQL.

Both hold ulogd's `ulog2_ct` layout: one row per flow (INSERT_CT in hash
mode, or INSERT_OR_REPLACE_CT: NEW inserts, DESTROY fills in the end), the
public IP:port in `reply_ip_daddr_str` / `reply_l4_dport`.  The engines
differ only in how a parameter is written and in PostgreSQL's `inet` type,
so a `Dialect` supplies those two spellings.  MySQL stores ulogd's binary(16)
addresses (`reply_ip_daddr`, no `_str`): its dialect names those columns, and its
source binds addresses as bytes and turns them back into text.

The query is shaped for the index on (reply_ip_daddr_str, reply_l4_dport,
flow_start_sec) (`LOOKUP_INDEX`): two equalities and a range on the start,
walked backwards from the window's end, so a lookup reads the few rows of
one public IP:port instead of the table.  Rows whose start is unknown
(NULL) are a second seek on the same index.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ulogpy.tools.natlookup.errors import LookupFailed
from ulogpy.tools.natlookup.flows import START_SLACK_S, Flow, Query
from ulogpy.tools.natlookup.merge import DESTROY, NEW, Record, merge

DEFAULT_TABLE = "ulog2_ct"
#: The index a lookup needs (created by `ulogpy db init` / the SQLITE3 output).
LOOKUP_INDEX_COLUMNS = ("reply_ip_daddr_str", "reply_l4_dport", "flow_start_sec")
#: Newest candidate flows read per lookup; more means a port shared by very many flows
#: inside the window, and the note asks for --remote or a smaller --window.
ROW_LIMIT = 1000
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")


#: A lookup slower than this is explained: is the lookup index missing?
SLOW_S = 1.0


@dataclass(frozen=True)
class Dialect:
    param: Callable[[str], str]  # name -> placeholder
    inet: Callable[[str], str]  # placeholder -> expression comparable with an address column
    explain: str  # prefix that makes the engine describe its plan
    full_scan: Callable[[str], bool]  # does this plan line read the whole table?
    address: Callable[[str], str] = lambda base: base + "_str"  # column of an address


SQLITE = Dialect(param=lambda n: f":{n}", inet=lambda p: p, explain="EXPLAIN QUERY PLAN ",
                 full_scan=lambda line: line.startswith("SCAN ") and " INDEX " not in line
                 and not line.startswith(("SCAN held", "SCAN unstarted")))
POSTGRESQL = Dialect(param=lambda n: f"%({n})s", inet=lambda p: f"CAST({p} AS inet)",
                     explain="EXPLAIN ", full_scan=lambda line: "Seq Scan on" in line)
MYSQL = Dialect(param=lambda n: f"%({n})s", inet=lambda p: p, explain="EXPLAIN ",
                full_scan=lambda line: " type=ALL" in line, address=lambda base: base)


def index_note(d: Dialect, plan: list[str], label: str, table: str) -> list[str]:
    """A hint when a (slow) lookup read the whole table."""
    if not any(d.full_scan(line.strip()) for line in plan):
        return []
    return [f"{label}: this lookup read the whole table {table}: it lacks the index on "
            f"({', '.join(LOOKUP_INDEX_COLUMNS)}); `ulogpy db init` adds it"]


def check_table(name: str) -> str:
    """`name` or `schema.name`, refused unless a plain identifier (it is put in SQL)."""
    if not _IDENT.match(name):
        raise LookupFailed(f"table {name!r}: not a table name (letters, digits, _; schema.table)")
    return name


def index_sql(table: str) -> str:
    """The lookup index, for SQLite and PostgreSQL alike (the benchmark and tests use it;
    `ulogpy db init` and the SQLITE3 output create the equivalent)."""
    name = check_table(table).rsplit(".", 1)[-1] + "_nat_lookup"
    return (f"CREATE INDEX IF NOT EXISTS {name} ON {table} "
            f"({', '.join(LOOKUP_INDEX_COLUMNS)})")


def lookup_sql(d: Dialect, table: str, q: Query) -> tuple[str, dict[str, Any]]:
    """The statement and its parameters for `q` (conditions coarse to the second;
    `Flow.matches` re-checks exactly)."""
    p = d.param
    where = [f"{d.address('reply_ip_daddr')} = {d.inet(p('ip'))}"]
    params: dict[str, Any] = {"ip": q.ip, "lo": math.floor(q.lo),
                              "hi": math.floor(q.hi + START_SLACK_S), "limit": ROW_LIMIT}
    if q.port is not None:
        where.append(f"reply_l4_dport = {p('port')}")
        params["port"] = q.port
    if q.proto is not None:
        where.append(f"orig_ip_protocol = {p('proto')}")
        params["proto"] = q.proto
    if q.remote_ip is not None:
        where.append(f"{d.address('orig_ip_daddr')} = {d.inet(p('rip'))}")
        params["rip"] = q.remote_ip
    if q.remote_port is not None:
        where.append(f"orig_l4_dport = {p('rport')}")
        params["rport"] = q.remote_port
    same = " AND ".join(where)
    sql = (
        f"SELECT * FROM (SELECT * FROM {table} WHERE {same}"
        f" AND flow_start_sec <= {p('hi')}"
        f" AND (flow_end_sec >= {p('lo')} OR flow_end_sec IS NULL OR flow_end_sec = 0)"
        f" ORDER BY flow_start_sec DESC LIMIT {p('limit')}) AS held"
        f" UNION ALL SELECT * FROM (SELECT * FROM {table} WHERE {same}"
        f" AND flow_start_sec IS NULL AND flow_end_sec >= {p('lo')}"
        f" AND flow_end_sec <= {p('hi')} LIMIT {p('limit')}) AS unstarted"
    )
    return sql, params


def truncation_note(count: int, label: str) -> list[str]:
    if count < ROW_LIMIT:
        return []
    return [f"{label}: more than {ROW_LIMIT} flows used this port in the window; only the "
            "newest were ranked: narrow with --remote, --proto or a smaller --window"]


def rows_to_flows(columns: Sequence[str], rows: Iterable[Sequence[Any]], source: str,
                  u32: bool = False) -> list[Flow]:
    """Rows of any `ulog2_ct`-like table into flows (extra columns ignored).

    `u32`: the writer stored 32-bit unsigned values as signed (ulogd's SQLITE3
    does, spec 6.7), so negative marks are brought back into range.
    """
    idx = {name.lower(): i for i, name in enumerate(columns)}

    def col(row: Sequence[Any], name: str) -> Any:
        i = idx.get(name)
        return None if i is None else row[i]

    records = []
    for row in rows:
        start = _stamp(col(row, "flow_start_sec"), col(row, "flow_start_usec"))
        end = _stamp(col(row, "flow_end_sec"), col(row, "flow_end_usec"))
        event = col(row, "ct_event")
        if event is None:
            event = DESTROY if end is not None else NEW
        mark = col(row, "ct_mark")
        if u32 and isinstance(mark, int) and mark < 0:
            mark &= 0xFFFFFFFF
        records.append(Record(
            event=int(event),
            tuple=(col(row, "orig_ip_protocol"), _addr(col(row, "orig_ip_saddr_str")),
                   col(row, "orig_l4_sport"), _addr(col(row, "orig_ip_daddr_str")),
                   col(row, "orig_l4_dport"), _addr(col(row, "reply_ip_saddr_str")),
                   col(row, "reply_l4_sport"), _addr(col(row, "reply_ip_daddr_str")),
                   col(row, "reply_l4_dport")),
            ct_id=col(row, "ct_id"), start=start, end=end,
            orig_bytes=col(row, "orig_raw_pktlen"), reply_bytes=col(row, "reply_raw_pktlen"),
            mark=mark, zone=col(row, "ct_zone"), source=source,
        ))
    return merge(records)


def _stamp(sec: Any, usec: Any) -> float | None:
    """Seconds + microseconds; 0 or NULL seconds is `unknown` (the schema's default)."""
    if not sec:
        return None
    return int(sec) + (int(usec or 0) / 1e6)


def _addr(value: Any) -> str | None:
    """inet values come back as ipaddress objects from psycopg, text from SQLite."""
    if value is None:
        return None
    text = str(value)
    return text.split("/", 1)[0] if "/" in text else text
