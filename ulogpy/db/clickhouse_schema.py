"""The ClickHouse NAT history: one table, two dialects, chosen by the server's version.

One row per conntrack event (NEW and DESTROY), append-only.  The table is ordered for
the one question asked of it, "who had public IP:port at time T": `ORDER BY
(reply_daddr, reply_dport, start)` (the reply tuple's destination is the public side
of the NAT), partitioned by day of `start`, so a lookup reads a few granules of the
few partitions its time range touches.

* `CURRENT` (servers with native `IPv6`, non-experimental `LowCardinality`, `TTL`,
  column codecs: 20.3 and later, every current LTS): `IPv6` addresses, the firewall
  name as `LowCardinality(String)`, Delta/ZSTD codecs, and `TTL` retention.
* `LEGACY` (Debian's 18.16): the same 16 bytes as `FixedString(16)` (IPv4 mapped into
  IPv6, as the `IPv6` type stores it), plain `String`, no codecs; retention by
  `ALTER TABLE ... DROP PARTITION` (`expired_partitions`).

Both keep times as `DateTime` seconds plus a microseconds column (18.16 has no
`DateTime64`), so rows, lookups and partitioning are the same on both.

Cluster layout: a `ReplicatedMergeTree` local table on every server (`{shard}` and
`{replica}` macros) and a `Distributed` table over it, sharded by `shard_key`: the
low 32 bits of the public address, a plain column, so any client computes the
shard of an address without a server function (`shard_of`).  Without a cluster,
one plain `MergeTree` table.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

LEGACY, CURRENT = "legacy", "current"
#: First server version with everything CURRENT uses.
CURRENT_SINCE = (20, 3)
#: How far before the asked time a flow may have started and still be open: conntrack's
#: TCP established timeout (5 days), plus a day for the partition boundary.
LOOKBACK_S = 6 * 86400
_V4_MAPPED = bytes(10) + b"\xff\xff"
DESTROY = 4
#: `start_exact`: 0 the time NEW was received, 1 the kernel's stamp, 2 unknown (the
#: row's `start` then holds its end, so that it lands in a partition a lookup reads).
UNKNOWN_START = 2


@dataclass(frozen=True)
class Column:
    name: str
    legacy: str  # type on 18.16
    current: str  # type (and codec) on current servers

    def ddl(self, variant: str) -> str:
        return f"{self.name} {self.legacy if variant == LEGACY else self.current}"


def _c(name: str, legacy: str, current: str | None = None) -> Column:
    return Column(name, legacy, current or legacy)


#: The columns, in insert order.  `*_us`: the microseconds of the second before them.
COLUMNS = (
    _c("firewall", "String", "LowCardinality(String)"),
    _c("event", "UInt8"),
    _c("ct_id", "UInt32"),
    _c("proto", "UInt8"),
    _c("orig_saddr", "FixedString(16)", "IPv6"),
    _c("orig_daddr", "FixedString(16)", "IPv6"),
    _c("orig_sport", "UInt16"),
    _c("orig_dport", "UInt16"),
    _c("reply_saddr", "FixedString(16)", "IPv6"),
    _c("reply_daddr", "FixedString(16)", "IPv6"),
    _c("reply_sport", "UInt16"),
    _c("reply_dport", "UInt16"),
    _c("start", "DateTime", "DateTime CODEC(Delta, ZSTD)"),
    _c("start_us", "UInt32"),
    #: 0: the time NEW was received; 1: the kernel's stamp; 2: unknown (= end).
    _c("start_exact", "UInt8"),
    _c("end", "DateTime", "DateTime CODEC(Delta, ZSTD)"),
    _c("end_us", "UInt32"),
    _c("orig_bytes", "UInt64", "UInt64 CODEC(ZSTD)"),
    _c("orig_packets", "UInt64", "UInt64 CODEC(ZSTD)"),
    _c("reply_bytes", "UInt64", "UInt64 CODEC(ZSTD)"),
    _c("reply_packets", "UInt64", "UInt64 CODEC(ZSTD)"),
    _c("mark", "UInt32"),
    _c("zone", "UInt16"),
    _c("shard_key", "UInt32"),
)
COLUMN_NAMES = tuple(c.name for c in COLUMNS)
ORDER_BY = "(reply_daddr, reply_dport, start)"
PARTITION_BY = "toYYYYMMDD(start)"


def variant_for(version: tuple[int, ...]) -> str:
    """The dialect a server of this version gets."""
    return CURRENT if tuple(version[:2]) >= CURRENT_SINCE else LEGACY


def local_name(table: str) -> str:
    return f"{table}_local"


def create_statements(database: str, table: str, variant: str, cluster: str | None = None,
                      retention_days: int = 0) -> list[tuple[str, str]]:
    """(what, statement) to create the database, the local table and, with a cluster,
    the Distributed table (`ON CLUSTER`).  All `IF NOT EXISTS`."""
    on = f" ON CLUSTER {cluster}" if cluster else ""
    columns = ",\n  ".join(c.ddl(variant) for c in COLUMNS)
    local = local_name(table) if cluster else table
    if cluster:
        engine = (f"ReplicatedMergeTree('/clickhouse/tables/{{shard}}/{database}/{local}', "
                  "'{replica}')")
    else:
        engine = "MergeTree()"
    ttl = ""
    if retention_days and variant == CURRENT:
        ttl = f"\nTTL start + INTERVAL {int(retention_days)} DAY"
    out = [(f"database {database}", f"CREATE DATABASE IF NOT EXISTS {database}{on}"),
           (f"table {database}.{local}",
            f"CREATE TABLE IF NOT EXISTS {database}.{local}{on} (\n  {columns}\n)"
            f" ENGINE = {engine}\nPARTITION BY {PARTITION_BY}\nORDER BY {ORDER_BY}{ttl}")]
    if cluster:
        out.append((f"distributed table {database}.{table}",
                    f"CREATE TABLE IF NOT EXISTS {database}.{table}{on} AS {database}.{local}"
                    f" ENGINE = Distributed({cluster}, {database}, {local}, shard_key)"))
    return out


def expired_partitions(database: str, table: str, oldest_day: int) -> str:
    """The partitions (YYYYMMDD) wholly older than `oldest_day` (18.16's retention)."""
    return (f"SELECT DISTINCT partition FROM system.parts WHERE database = '{database}' "
            f"AND table = '{table}' AND active AND toUInt32(partition) < {int(oldest_day)}")


# -- rows -------------------------------------------------------------------------------
def address16(raw: bytes | None) -> bytes:
    """A 4- or 16-byte address as the table's 16 bytes (IPv4 mapped into IPv6)."""
    if not raw:
        return bytes(16)
    return _V4_MAPPED + raw if len(raw) == 4 else bytes(raw)


def address_text(raw: bytes | None) -> str | None:
    """The 16 bytes back into inet_ntop's notation (IPv4 for mapped addresses)."""
    if raw is None:
        return None
    raw = bytes(raw)
    if len(raw) != 16 or raw == bytes(16):
        return None
    if raw.startswith(_V4_MAPPED):
        return str(ipaddress.IPv4Address(raw[12:]))
    return ipaddress.IPv6Address(raw).compressed


def address_bytes(text: str) -> bytes:
    addr = ipaddress.ip_address(text)
    return address16(addr.packed)


def shard_key(addr16: bytes) -> int:
    """The Distributed table's sharding key: the address's low 32 bits (consecutive
    public addresses of a NAT pool go round-robin over the shards)."""
    return int.from_bytes(addr16[12:16], "big")


def shard_of(addr16: bytes, weights: list[int]) -> int:
    """The index (0-based, in the cluster's order) of the shard holding `addr16`, as
    the Distributed engine picks it: key modulo the total weight, shards by range."""
    slot = shard_key(addr16) % sum(weights)
    for index, weight in enumerate(weights):
        if slot < weight:
            return index
        slot -= weight
    raise AssertionError("unreachable")


def row_builder(firewall: str) -> Callable[[dict], tuple]:
    """record (NFCT keys, raw addresses) -> the row, in COLUMNS' order."""

    def build(r: dict) -> tuple:
        pub = address16(r.get("reply.ip.daddr"))
        event = r.get("ct.event") or 0
        start, start_us = r.get("flow.start.sec") or 0, r.get("flow.start.usec") or 0
        end, end_us = r.get("flow.end.sec") or 0, r.get("flow.end.usec") or 0
        if event == DESTROY:
            exact = 1
            if not start:  # no kernel start: partition the row by its end
                start, start_us, exact = end, end_us, UNKNOWN_START
        else:
            exact, ns = 0, r.get("flow.start.ns")
            if ns:  # the kernel's stamp of NEW (NFCT exact_start=1): no reception delay
                start, start_us, exact = ns // 1_000_000_000, ns // 1000 % 1_000_000, 1
        return (
            firewall, event, r.get("ct.id") or 0,
            r.get("orig.ip.protocol") or 0,
            address16(r.get("orig.ip.saddr")), address16(r.get("orig.ip.daddr")),
            r.get("orig.l4.sport") or 0, r.get("orig.l4.dport") or 0,
            address16(r.get("reply.ip.saddr")), pub,
            r.get("reply.l4.sport") or 0, r.get("reply.l4.dport") or 0,
            start, start_us, exact, end, end_us,
            r.get("orig.raw.pktlen") or 0, r.get("orig.raw.pktcount") or 0,
            r.get("reply.raw.pktlen") or 0, r.get("reply.raw.pktcount") or 0,
            r.get("ct.mark") or 0, r.get("ct.zone") or 0, shard_key(pub),
        )

    return build
