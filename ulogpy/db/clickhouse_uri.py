"""`clickhouse://[user[:password]@]host[:port][,host2[:port]...]/database[?table=NAME]`.

One ClickHouse database named by the CLICKHOUSE output, `ulogpy db init --clickhouse`
and `nat-lookup --source`.  The port is the native protocol's (9000 by default).
Several hosts mean failover: the connection tries them in order.  The label shown in
messages and in nat-lookup's `source` field never holds the password.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field

from ulogpy.db.redact import Redactor

PREFIX = "clickhouse://"
DEFAULT_PORT = 9000
DEFAULT_TABLE = "ulog_nat"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
FORM = "clickhouse://[user[:password]@]host[:port][,host2[:port]...]/database"


class ClickHouseUriError(ValueError):
    pass


@dataclass(frozen=True)
class ClickHouseTarget:
    hosts: tuple[tuple[str, int], ...]
    database: str
    user: str = "default"
    password: str = field(default="", repr=False)
    table: str | None = None

    @property
    def label(self) -> str:
        """The URL without the password (for messages and `source`)."""
        who = f"{urllib.parse.quote(self.user)}@" if self.user != "default" else ""
        hosts = ",".join(f"{_host(h)}:{p}" for h, p in self.hosts)
        query = f"?table={self.table}" if self.table else ""
        return f"{PREFIX}{who}{hosts}/{self.database}{query}"

    @property
    def redact(self) -> Redactor:
        return Redactor([self.password])

    def client_args(self) -> dict:
        """Keyword arguments of clickhouse_driver.Client: the first host, the others as
        `alt_hosts` (the driver fails over between them in order)."""
        (host, port), *rest = self.hosts
        args: dict = {"host": host, "port": port, "database": self.database,
                      "user": self.user, "password": self.password}
        if rest:
            args["alt_hosts"] = ",".join(f"{_host(h)}:{p}" for h, p in rest)
        return args


def _host(name: str) -> str:
    return f"[{name}]" if ":" in name else name


def check_ident(name: str, what: str) -> str:
    """A table, database or cluster name (it is put in SQL), refused unless plain."""
    if not _IDENT.match(name):
        raise ClickHouseUriError(f"{what} {name!r}: use letters, digits and _ only")
    return name


def parse_clickhouse_uri(text: str) -> ClickHouseTarget:
    if not text.startswith(PREFIX):
        raise ClickHouseUriError(f"not a ClickHouse URL; use {FORM}")
    rest = text[len(PREFIX):]
    rest, _, query_text = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    database = urllib.parse.unquote(path.strip("/"))
    if not slash or not database:
        raise ClickHouseUriError(f"the URL names no database; use {FORM}")
    check_ident(database, "database")
    user, password = "default", ""
    creds, at, hostlist = netloc.rpartition("@")
    if at:
        name, _, secret = creds.partition(":")
        user = urllib.parse.unquote(name) or "default"
        password = urllib.parse.unquote(secret)
    hosts = tuple(_parse_host(h, password) for h in hostlist.split(","))
    query = urllib.parse.parse_qs(query_text, keep_blank_values=True)
    unknown = set(query) - {"table"}
    if unknown:
        raise ClickHouseUriError(f"unknown URL parameter {sorted(unknown)[0]!r}; only "
                                 "?table=NAME")
    table = query["table"][-1] if "table" in query else None
    if table is not None:
        check_ident(table, "table")
    return ClickHouseTarget(hosts, database, user, password, table)


def _parse_host(text: str, password: str) -> tuple[str, int]:
    text = text.strip()
    if text.startswith("["):
        host, _, tail = text[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise ClickHouseUriError(f"a host is missing; use {FORM}")
    if port_text and (not port_text.isdigit() or not 0 < int(port_text) < 65536):
        shown = Redactor([password])(port_text)
        raise ClickHouseUriError(f"port {shown!r} of {host}: not a port number (1-65535)")
    return host, int(port_text) if port_text else DEFAULT_PORT
