"""`ulogpy db init --clickhouse URL [--cluster NAME]`: the NAT history's tables.

The server's version, read first, picks the schema variant
(`ulogpy.db.clickhouse_schema`).  With a cluster, the DDL runs `ON CLUSTER` (every
server gets its ReplicatedMergeTree local table and the Distributed table), so it
needs the cluster's ZooKeeper; without one, a single MergeTree table.
"""

from __future__ import annotations

import dataclasses

from ulogpy.db.clickhouse_schema import (
    create_statements,
    expired_partitions,
    local_name,
    variant_for,
)
from ulogpy.db.clickhouse_sink import make_client, server_version
from ulogpy.db.clickhouse_uri import DEFAULT_TABLE, ClickHouseTarget, check_ident


def clickhouse_init(target: ClickHouseTarget, cluster: str | None = None,
                    retention_days: int = 0) -> list[str]:
    """Create what is missing; the objects that did not exist before."""
    if cluster:
        check_ident(cluster, "cluster")
    table = target.table or DEFAULT_TABLE
    client = make_client(dataclasses.replace(target, database="default"))  # may not exist yet
    try:
        variant = variant_for(server_version(client))
        created = []
        for what, sql in create_statements(target.database, table, variant, cluster,
                                           retention_days):
            name = what.rsplit(" ", 1)[-1]
            if not _exists(client, name):
                client.execute(sql)
                created.append(f"{what} ({variant} schema)" if "table" in what else what)
        return created
    finally:
        client.disconnect()


def _exists(client, name: str) -> bool:
    if "." not in name:
        return bool(client.execute("SELECT 1 FROM system.databases WHERE name = %(n)s",
                                   {"n": name}))
    db, table = name.split(".", 1)
    return bool(client.execute(
        "SELECT 1 FROM system.tables WHERE database = %(d)s AND name = %(t)s",
        {"d": db, "t": table}))


def clickhouse_prune(target: ClickHouseTarget, cluster: str | None, days: int) -> list[str]:
    """Drop the day partitions wholly older than `days` days (on every shard with a
    cluster); the partitions dropped.  Retention for servers without TTL (18.16)."""
    import time

    if cluster:
        check_ident(cluster, "cluster")
    table = target.table or DEFAULT_TABLE
    local = local_name(table) if cluster else table
    oldest = int(time.strftime("%Y%m%d", time.gmtime(time.time() - days * 86400)))
    client = make_client(target)
    try:
        on = f" ON CLUSTER {cluster}" if cluster else ""
        hosts = [None]
        if cluster:  # each shard's parts: ask every server of the cluster
            hosts = client.execute("SELECT DISTINCT host_name, port FROM system.clusters "
                                   "WHERE cluster = %(c)s", {"c": cluster})
        parts: set[str] = set()
        for host in hosts:
            peer = client if host is None else make_client(
                dataclasses.replace(target, hosts=(tuple(host),)))
            try:
                parts |= {r[0] for r in peer.execute(
                    expired_partitions(target.database, local, oldest))}
            except Exception:  # a server that is down keeps its parts until next time
                pass
            finally:
                if peer is not client:
                    peer.disconnect()
        for part in sorted(parts):
            client.execute(f"ALTER TABLE {target.database}.{local}{on} DROP PARTITION {part}")
        return sorted(parts)
    finally:
        client.disconnect()
