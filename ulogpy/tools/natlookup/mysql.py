"""MySQL / MariaDB history: ulogd's `ulog2_ct` table (mysql-ulogd2.sql), through PyMySQL.

`mysql://user[:pass]@host[:port]/db[?socket=PATH][&table=NAME]`.  ulogd's MySQL layout
keeps addresses as binary(16), IPv4 mapped into IPv6 (IP2BIN's form), so the lookup
binds the address in that form, walks the `ulog2_ct_nat_lookup` index (`ulogpy db init
--mysql`), and turns the addresses back into text.  `state` is the event when the rows
come from INSERT_OR_REPLACE_CT (`conntrack_events`); 0 (INSERT_CT) means unknown.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any

from ulogpy.db.myuri import MysqlUriError, parse_mysql_uri
from ulogpy.tools.natlookup import sql as sql_module
from ulogpy.tools.natlookup.errors import LookupFailed
from ulogpy.tools.natlookup.flows import Flow, Query
from ulogpy.tools.natlookup.sql import (
    DEFAULT_TABLE,
    MYSQL,
    check_table,
    index_note,
    lookup_sql,
    rows_to_flows,
    truncation_note,
)

ADDRESS_COLUMNS = ("orig_ip_saddr", "orig_ip_daddr", "reply_ip_saddr", "reply_ip_daddr")
CONNECT_TIMEOUT_S = 5
NO_TABLE = 1146
_V4_MAPPED = bytes(10) + b"\xff\xff"


def address_bytes(text: str) -> bytes:
    """An address as ulogd's MySQL schema stores it (binary(16), IPv4 mapped)."""
    addr = ipaddress.ip_address(text)
    return _V4_MAPPED + addr.packed if addr.version == 4 else addr.packed


def address_text(value: Any) -> str | None:
    if value is None:
        return None
    raw = bytes(value)
    if len(raw) != 16:
        return None
    if raw.startswith(_V4_MAPPED):
        return str(ipaddress.IPv4Address(raw[12:]))
    return str(ipaddress.IPv6Address(raw))


class MysqlSource:
    def __init__(self, connect: dict, table: str = DEFAULT_TABLE, label: str = "",
                 redact=str):
        self.connect = connect
        self.table = check_table(table)
        self.notes: list[str] = []
        self.label = label
        self.redact = redact

    @classmethod
    def from_uri(cls, text: str) -> MysqlSource:
        try:
            target = parse_mysql_uri(text, connect_timeout=CONNECT_TIMEOUT_S)
        except MysqlUriError as exc:
            raise LookupFailed(f"--source: {exc}") from None
        return cls(target.connect, target.table or DEFAULT_TABLE, label=target.label,
                   redact=target.redact)

    def lookup(self, q: Query) -> list[Flow]:
        import pymysql

        sql, params = lookup_sql(MYSQL, self.table, q)
        for name in ("ip", "rip"):
            if name in params:
                params[name] = address_bytes(params[name])
        try:
            conn = pymysql.connect(**self.connect)
        except pymysql.Error as exc:
            raise LookupFailed(f"{self.label}: cannot reach the database: "
                               f"{self.redact(_text(exc))}") from None
        try:
            with conn.cursor() as cur:
                began = time.monotonic()
                cur.execute(sql, params)
                columns = [c[0] for c in cur.description or ()]
                rows = cur.fetchall()
                if time.monotonic() - began > sql_module.SLOW_S:
                    cur.execute(MYSQL.explain + sql, params)
                    names = [c[0] for c in cur.description or ()]
                    plan = [" ".join(f"{n}={v}" for n, v in zip(names, r, strict=True))
                            for r in cur.fetchall()]
                    self.notes.extend(index_note(MYSQL, [" " + p for p in plan], self.label,
                                                 self.table))
        except pymysql.Error as exc:
            code = exc.args[0] if exc.args else None
            if code == NO_TABLE:
                raise LookupFailed(f"{self.label}: no table {self.table!r} (load ulogd's "
                                   "mysql-ulogd2.sql or run `ulogpy db init --mysql`, or "
                                   "give ?table=NAME)") from None
            raise LookupFailed(f"{self.label}: query failed (is {self.table!r} ulogd's "
                               f"ulog2_ct layout?): {self.redact(_text(exc))}") from None
        finally:
            conn.close()
        self.notes.extend(truncation_note(len(rows), self.label))
        return rows_to_flows(*_as_text(columns, rows), self.label)


def _as_text(columns: list[str], rows: list[tuple]) -> tuple[list[str], list[tuple]]:
    """ulogd's binary columns as the `_str` text columns of the shared row reader;
    `state` as `ct_event` when it holds one (INSERT_OR_REPLACE_CT)."""
    lower = [c.lower() for c in columns]
    convert = {i for i, c in enumerate(lower) if c in ADDRESS_COLUMNS}
    names = [c + "_str" if i in convert else ("ct_event" if c == "state" else c)
             for i, c in enumerate(lower)]
    state = lower.index("state") if "state" in lower else None
    out = []
    for row in rows:
        values = [address_text(v) if i in convert else v for i, v in enumerate(row)]
        if state is not None and not values[state]:
            values[state] = None  # INSERT_CT leaves 0: the event is unknown
        out.append(tuple(values))
    return names, out


def _text(exc: Exception) -> str:
    args = getattr(exc, "args", ())
    return str(args[1]) if len(args) > 1 else str(exc)
