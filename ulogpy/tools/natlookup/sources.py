"""SRC strings, and the history a ulogpy/ulogd configuration writes.

    sqlite:///abs/path.db[?table=NAME]   SqliteSource
    postgresql://...[?table=NAME]        PostgresSource (libpq URI)
    mysql://user@host/db[?socket=P&table=NAME]  MysqlSource (also mariadb://)
    json:PATH                            JsonSource (globs, rotated, .gz)
    clickhouse://[u[:p]@]h[:port][,...]/db[?table=NAME]  ClickHouseSource

Without --source the configuration's stacks are read (not started: nothing
is opened or created): every NFCT stack that turns addresses into text with
IP2STR and ends in JSON (file mode), SQLITE3 or PGSQL is a history, and every
one that ends in MYSQL (ulogd's binary address columns: IP2STR or IP2BIN) or in
CLICKHOUSE (raw addresses).
"""

from __future__ import annotations

import os
import urllib.parse
from typing import Any, Protocol

from ulogpy.db.myuri import PREFIXES as MYSQL_PREFIXES
from ulogpy.tools.natlookup.errors import LookupFailed
from ulogpy.tools.natlookup.flows import Flow, Query
from ulogpy.tools.natlookup.jsonlog import PREFIX as JSON_PREFIX
from ulogpy.tools.natlookup.jsonlog import JsonSource
from ulogpy.tools.natlookup.postgresql import SCHEMES as PG_SCHEMES
from ulogpy.tools.natlookup.postgresql import PostgresSource
from ulogpy.tools.natlookup.sqlite import PREFIX as SQLITE_PREFIX
from ulogpy.tools.natlookup.sqlite import SqliteSource

FORMS = ("sqlite:///abs/path.db[?table=NAME], postgresql://...[?table=NAME], "
         "mysql://user@host/db[?socket=PATH&table=NAME], "
         "clickhouse://host[:port][,host2...]/db[?table=NAME] or json:PATH")
HISTORY_OUTPUTS = ("JSON", "SQLITE3", "PGSQL", "MYSQL", "CLICKHOUSE")
#: Outputs that keep raw addresses themselves: no IP2STR needed before them.
RAW_ADDRESS_OUTPUTS = ("MYSQL", "CLICKHOUSE")


class Source(Protocol):
    label: str

    def lookup(self, q: Query) -> list[Flow]: ...


def parse_source(text: str) -> Source:
    if text.startswith(SQLITE_PREFIX) or text.startswith("sqlite:"):
        return SqliteSource.from_uri(text)
    if text.startswith(PG_SCHEMES):
        return PostgresSource.from_uri(text)
    if text.startswith(MYSQL_PREFIXES):
        from ulogpy.tools.natlookup.mysql import MysqlSource

        return MysqlSource.from_uri(text)
    if text.startswith(JSON_PREFIX):
        return JsonSource.from_spec(text)
    if text.startswith("clickhouse://"):
        from ulogpy.tools.natlookup.clickhouse import ClickHouseSource

        return ClickHouseSource.from_uri(text)
    raise LookupFailed(f"--source {text!r}: unknown kind; use {FORMS}")


def config_sources(path: str | None) -> tuple[str, list[Source], list[str]]:
    """(config name, its histories, notes about stacks left out)."""
    from ulogpy.config.errors import ConfigError
    from ulogpy.config.load import load
    from ulogpy.core.stack import parse_stack_tokens

    try:
        config = load(path)
    except ConfigError as exc:
        raise LookupFailed(str(exc)) from None
    found: dict[str, Source] = {}
    notes: list[str] = []
    for index, text in enumerate(config.global_options.stack):
        line = config.line_of_stack(index)
        try:
            tokens = parse_stack_tokens(config, text, line)
        except ConfigError as exc:
            raise LookupFailed(str(exc)) from None
        names = [name for _, name in tokens]
        out_id, out_name = tokens[-1]
        if names[0] != "NFCT" or out_name not in HISTORY_OUTPUTS:
            continue
        if "IP2STR" not in names[1:-1] and out_name not in RAW_ADDRESS_OUTPUTS:
            notes.append(f"stack '{text}': no IP2STR before {out_name}, so no addresses as "
                         "text: not usable, left out")
            continue
        opts = _options(config, out_id, out_name, line)
        source = _history(out_name, opts, notes, text)
        if source is not None:
            found.setdefault(source.label, source)
    return config.path, list(found.values()), notes


def _history(kind: str, opts: dict[str, Any], notes: list[str], text: str) -> Source | None:
    if kind == "JSON":
        if str(opts.get("mode", "file")).lower() != "file":
            notes.append(f"stack '{text}': JSON mode {opts.get('mode')} sends records away, "
                         "no file to read: left out")
            return None
        file = os.path.abspath(str(opts.get("file") or "/var/log/ulogd.json"))
        return JsonSource(file, label=f"{JSON_PREFIX}{file}", rotated=True)
    if kind == "SQLITE3":
        db = os.path.abspath(str(opts.get("db") or ""))
        table = str(opts.get("table") or "")
        return SqliteSource(db, table)
    if kind == "MYSQL":
        return _mysql(opts)
    if kind == "CLICKHOUSE":
        return _clickhouse(opts)
    return _pgsql(opts)


def _clickhouse(opts: dict[str, Any]) -> Source:
    """CLICKHOUSE's url and table (the Distributed table with a cluster)."""
    import dataclasses

    from ulogpy.db.clickhouse_uri import DEFAULT_TABLE, parse_clickhouse_uri
    from ulogpy.tools.natlookup.clickhouse import ClickHouseSource

    target = parse_clickhouse_uri(str(opts.get("url") or ""))  # checked by the config
    table = str(opts.get("table") or DEFAULT_TABLE)
    return ClickHouseSource(dataclasses.replace(target, table=table))


def _mysql(opts: dict[str, Any]) -> Source:
    """MYSQL's options: the flow table behind its view (`conntrack_events` and ulogd's
    `conntrack` both show `ulog2_ct`)."""
    from ulogpy.db.mysqlsink import connect_args
    from ulogpy.db.redact import Redactor
    from ulogpy.plugins.output.mysql import default_socket
    from ulogpy.tools.natlookup.mysql import CONNECT_TIMEOUT_S, MysqlSource

    password = str(opts.get("pass") or "")
    connect = connect_args(host=str(opts.get("host") or ""), port=int(opts.get("port") or 0),
                           user=str(opts.get("user") or ""), password=password,
                           db=str(opts.get("db") or ""),
                           socket=str(opts.get("socket") or "") or default_socket(),
                           connect_timeout=CONNECT_TIMEOUT_S)
    connect["autocommit"] = True
    table = str(opts.get("table") or "")
    if table in ("conntrack", "conntrack_events"):
        table = "ulog2_ct"
    where = connect.get("unix_socket") or f"{connect.get('host')}:{connect.get('port')}"
    label = f"mysql://{connect['user']}@{where}/{connect['database']}?table={table}"
    return MysqlSource(connect, table, label=label, redact=Redactor([password]))


def _pgsql(opts: dict[str, Any]) -> Source:
    """PGSQL's options as ulogd builds its connection string (spec 4.14)."""
    from psycopg.conninfo import conninfo_to_dict

    connstring = str(opts.get("connstring") or "")
    if connstring:
        params = {k: str(v) for k, v in conninfo_to_dict(connstring).items()}
    else:
        params = {}
        for key, name in (("host", "host"), ("port", "port"), ("dbname", "db"),
                          ("user", "user"), ("password", "pass")):
            value = opts.get(name)
            if value not in (None, "", 0, "0"):
                params[key] = str(value)
    schema = str(opts.get("schema") or "public")
    table = f"{schema}.{opts.get('table')}"
    shown = [(k, v) for k, v in params.items() if k != "password"] + [("table", table)]
    label = "postgresql://?" + urllib.parse.urlencode(shown, safe="/")
    conninfo = " ".join(f"{k}='{_quote(v)}'" for k, v in params.items())
    return PostgresSource(conninfo, table, label=label)


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _options(config: Any, inst_id: str, name: str, line: int | None) -> dict[str, Any]:
    """The instance's options: validated by the plugin's own table when ulogpy has the
    plugin, else the section as written (a ulogd.conf using a plugin ulogpy lacks)."""
    from ulogpy.config.errors import ConfigError
    from ulogpy.config.model import validate_instance
    from ulogpy.core.registry import registry

    cls = registry().get(name)
    if cls is not None:
        try:
            return validate_instance(cls, inst_id, config.document, line).model_dump()
        except ConfigError as exc:
            raise LookupFailed(str(exc)) from None
    section = config.section(inst_id)
    return {e.key: e.value for e in section.entries} if section else {}
