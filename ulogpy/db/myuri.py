"""`mysql://user:pass@host:port/db?socket=/path&table=NAME`: one MySQL database named in a
command line (`ulogpy db init --mysql`, `ulogpy nat-lookup --source`).

No host, or `localhost`, is the unix socket (`socket`, else $MYSQL_UNIX_PORT, else
/run/mysqld/mysqld.sock), as for the MYSQL output.  The label shown in messages has no
password.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass

from ulogpy.db.redact import Redactor

PREFIXES = ("mysql://", "mariadb://")
DEFAULT_SOCKET = "/run/mysqld/mysqld.sock"


def default_socket() -> str:
    """libmysqlclient's socket for an empty host or `localhost`: $MYSQL_UNIX_PORT, else
    Debian's."""
    return os.environ.get("MYSQL_UNIX_PORT") or DEFAULT_SOCKET


class MysqlUriError(ValueError):
    pass


@dataclass(frozen=True)
class MysqlTarget:
    connect: dict
    label: str
    table: str | None
    redact: Redactor


def parse_mysql_uri(text: str, connect_timeout: int = 10) -> MysqlTarget:
    from ulogpy.db.mysqlsink import connect_args

    if not text.startswith(PREFIXES):
        raise MysqlUriError(f"{text!r}: not a mysql://user[:pass]@host[:port]/db URI")
    parts = urllib.parse.urlsplit(text)
    db = urllib.parse.unquote(parts.path.lstrip("/"))
    if not db:
        raise MysqlUriError("the URI names no database (mysql://user@host/DB)")
    query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    unknown = set(query) - {"socket", "unix_socket", "table"}
    if unknown:
        raise MysqlUriError(f"unknown URI parameter(s) {', '.join(sorted(unknown))} "
                            "(valid: socket, table)")
    password = urllib.parse.unquote(parts.password or "")
    try:
        port = parts.port or 0
    except ValueError:
        raise MysqlUriError("the URI's port is not a number") from None
    socket = query.get("socket") or query.get("unix_socket") or default_socket()
    connect = connect_args(host=parts.hostname or "", port=port,
                           user=urllib.parse.unquote(parts.username or ""),
                           password=password, db=db, socket=socket,
                           connect_timeout=connect_timeout)
    connect["autocommit"] = True
    netloc = parts.netloc.rpartition("@")
    shown = f"{netloc[0].split(':', 1)[0]}@{netloc[2]}" if netloc[1] else parts.netloc
    label = urllib.parse.urlunsplit((parts.scheme, shown, parts.path, parts.query, ""))
    return MysqlTarget(connect, label, query.get("table"), Redactor([password]))
