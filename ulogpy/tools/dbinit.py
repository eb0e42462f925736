"""`ulogpy db init`: create ulogpy's schema, or complete an existing ulogd database.

    ulogpy db init [-c CONFIG] [INSTANCE ...]    every PGSQL / SQLITE3 output of CONFIG
    ulogpy db init --pgsql CONNINFO [--schema S] one PostgreSQL database
    ulogpy db init --sqlite FILE                 one SQLite file
    ulogpy db init --mysql mysql://user[:pass]@host[:port]/db[?socket=PATH]
                                                 one MySQL / MariaDB database (ulogd's
                                                 packet and flow schema, unsigned
                                                 mac_protocol, INSERT_OR_REPLACE_CT,
                                                 conntrack_events, lookup indexes)
    ulogpy db init --clickhouse clickhouse://[user[:pass]@]host[:port][,...]/db[?table=T]
                   [--cluster NAME]              the ClickHouse NAT history (local and
                                                 Distributed tables, ON CLUSTER;
                                                 --retention-days N: TTL, current servers)
    ulogpy db prune --clickhouse URL [--cluster NAME] --days N
                                                 drop day partitions older than N days
                                                 (retention on 18.16, which has no TTL)

Prints each object it created; exits 1 (with the reason, password masked)
when a database cannot be reached or the SQL fails.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys

from ulogpy.db.redact import Redactor, secrets_of_conninfo
from ulogpy.db.schema import mysql_init, pg_init, sqlite_init


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ulogpy db", description="database maintenance")
    sub = p.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="create ulogpy's schema; add only what is missing")
    init.add_argument("-c", "--configfile", help="configuration whose outputs to set up")
    init.add_argument("instances", nargs="*", help="only these output instances")
    init.add_argument("--pgsql", metavar="CONNINFO", help="a PostgreSQL connection string")
    init.add_argument("--schema", default="public", help="PostgreSQL schema (default public)")
    init.add_argument("--sqlite", metavar="FILE", help="an SQLite database file")
    init.add_argument("--mysql", metavar="URI",
                      help="a MySQL / MariaDB database: mysql://user[:pass]@host[:port]/db"
                           "[?socket=PATH]")
    init.add_argument("--clickhouse", metavar="URL",
                      help="a ClickHouse database: clickhouse://[user[:pass]@]host[:port]"
                           "[,host2...]/db[?table=NAME]")
    init.add_argument("--cluster", metavar="NAME",
                      help="with --clickhouse: the cluster (ON CLUSTER, Distributed table)")
    init.add_argument("--retention-days", type=int, default=0, metavar="DAYS",
                      help="with --clickhouse on a current server: TTL of the rows "
                           "(18.16 has no TTL: run `ulogpy db prune` daily)")
    prune = sub.add_parser("prune", help="drop the ClickHouse history's old day partitions")
    prune.add_argument("--clickhouse", metavar="URL", required=True)
    prune.add_argument("--cluster", metavar="NAME")
    prune.add_argument("--days", type=int, required=True, help="days of history to keep")
    return p


def _prune(args: argparse.Namespace) -> int:
    from ulogpy.db.clickhouse_init import clickhouse_prune
    from ulogpy.db.clickhouse_uri import ClickHouseUriError, parse_clickhouse_uri

    if args.days < 1:
        sys.stderr.write("ulogpy db prune: --days must be 1 or more\n")
        return 1
    try:
        target = parse_clickhouse_uri(args.clickhouse)
    except ClickHouseUriError as exc:
        sys.stderr.write(f"ulogpy db prune: --clickhouse: {exc}\n")
        return 1
    try:
        dropped = clickhouse_prune(target, args.cluster, args.days)
    except Exception as exc:
        text = " ".join((str(exc).strip() or type(exc).__name__).split())[:300]
        sys.stderr.write(f"ulogpy db prune: {target.label}: {target.redact(text)}\n")
        return 1
    for part in dropped:
        sys.stdout.write(f"{target.label}: dropped partition {part}\n")
    if not dropped:
        sys.stdout.write(f"{target.label}: nothing older than {args.days} days\n")
    return 0


def _init_clickhouse(url: str, cluster: str | None, retention_days: int = 0) -> bool:
    from ulogpy.db.clickhouse_init import clickhouse_init
    from ulogpy.db.clickhouse_uri import ClickHouseUriError, parse_clickhouse_uri

    try:
        target = parse_clickhouse_uri(url)
    except ClickHouseUriError as exc:
        sys.stderr.write(f"ulogpy db: --clickhouse: {exc}\n")
        return False
    try:
        created = clickhouse_init(target, cluster, retention_days)
    except Exception as exc:
        text = " ".join((str(exc).strip() or type(exc).__name__).split())[:300]
        sys.stderr.write(f"ulogpy db: {target.label}: {target.redact(text)}\n")
        return False
    _report(target.label, created)
    return True


def _init_pg(conninfo: str, schema: str, label: str, redact: Redactor) -> bool:
    import psycopg

    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
            created = pg_init(conn, schema)
    except Exception as exc:
        sys.stderr.write(f"ulogpy db: {label}: {redact(exc).strip()}\n")
        return False
    _report(label, created)
    return True


def _init_mysql(connect: dict, label: str, redact: Redactor) -> bool:
    import pymysql

    try:
        conn = pymysql.connect(**{**connect, "autocommit": True})
        try:
            created = mysql_init(conn)
        finally:
            conn.close()
    except Exception as exc:
        sys.stderr.write(f"ulogpy db: {label}: {redact(exc).strip()}\n")
        return False
    _report(label, created)
    return True


def _init_mysql_uri(uri: str) -> bool:
    from ulogpy.db.myuri import MysqlUriError, parse_mysql_uri

    try:
        target = parse_mysql_uri(uri)
    except MysqlUriError as exc:
        sys.stderr.write(f"ulogpy db: --mysql: {exc}\n")
        return False
    return _init_mysql(target.connect, target.label, target.redact)


def _init_sqlite(path: str, label: str) -> bool:
    try:
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            created = sqlite_init(conn)
        finally:
            conn.close()
    except (sqlite3.Error, OSError) as exc:
        sys.stderr.write(f"ulogpy db: {label}: {exc}\n")
        return False
    _report(label, created)
    return True


def _report(label: str, created: list[str]) -> None:
    if created:
        for item in created:
            verb = "" if item.startswith(("replaced ", "changed ")) else "created "
            sys.stdout.write(f"{label}: {verb}{item}\n")
    else:
        sys.stdout.write(f"{label}: nothing to do\n")


def _from_config(path: str | None, wanted: list[str]) -> int:
    from ulogpy.config.errors import ConfigError
    from ulogpy.core.stack import load_pipeline

    try:
        config, pipeline = load_pipeline(path)
    except ConfigError as exc:
        sys.stderr.write(f"ulogpy db: {exc}\n")
        return 1
    outputs = [o for o in pipeline.outputs if o.name in ("PGSQL", "SQLITE3", "MYSQL", "DBI")]
    if wanted:
        missing = set(wanted) - {o.id for o in outputs}
        if missing:
            sys.stderr.write(f"ulogpy db: no SQL output named "
                             f"{', '.join(sorted(missing))} in {config.path}\n")
            return 1
        outputs = [o for o in outputs if o.id in wanted]
    if not outputs:
        sys.stderr.write(f"ulogpy db: {config.path} has no SQL output (PGSQL, MYSQL, "
                         "SQLITE3, DBI)\n")
        return 1
    ok = True
    for out in outputs:
        kind = out.dbtype if out.name == "DBI" else out.name.lower()
        if kind == "pgsql":
            ok &= _init_pg(out.conninfo, out.config.schema, out.id, out.redact)
        elif kind == "mysql":
            ok &= _init_mysql(out.transport.connect, out.id, out.redact)
        elif out.name == "DBI":
            ok &= _init_sqlite(out.sqlite_path(), out.id)
        else:
            ok &= _init_sqlite(out.config.db, out.id)
    return 0 if ok else 1


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.command == "prune":
        return _prune(args)
    if args.cluster and not args.clickhouse:
        sys.stderr.write("ulogpy db: --cluster goes with --clickhouse\n")
        return 1
    if args.pgsql or args.sqlite or args.mysql or args.clickhouse:
        if args.configfile or args.instances:
            sys.stderr.write("ulogpy db: --pgsql/--sqlite/--mysql/--clickhouse and a "
                             "configuration exclude each other\n")
            return 1
        ok = True
        if args.clickhouse:
            ok &= _init_clickhouse(args.clickhouse, args.cluster, args.retention_days)
        if args.pgsql:
            redact = Redactor(secrets_of_conninfo(args.pgsql))
            ok &= _init_pg(args.pgsql, args.schema, "pgsql", redact)
        if args.sqlite:
            ok &= _init_sqlite(args.sqlite, args.sqlite)
        if args.mysql:
            ok &= _init_mysql_uri(args.mysql)
        return 0 if ok else 1
    return _from_config(args.configfile, args.instances)
