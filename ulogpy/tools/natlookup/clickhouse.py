"""ClickHouse history: the CLICKHOUSE output's table, through clickhouse-driver.

`clickhouse://[user[:pass]@]host[:port][,host2...]/db[?table=NAME]` (default
`ulog_nat`).  One query per lookup: equality on (reply_daddr, reply_dport) and a
range on `start` — the table's ORDER BY, so the primary key prunes to a few granules,
and the day partitions outside [at - LOOKBACK_S, at + window] are skipped.  The
lookback covers long-lived flows (conntrack's TCP established timeout is 5 days).
The rows of one flow (its NEW and DESTROY) are folded into one interval by the
server (GROUP BY the conntrack id and tuple), and flows that ended before the
window are left out there, so a busy CGNAT port reused thousands of times in six
days costs a few rows on the wire.

When the table is Distributed, the lookup reads only the shard that holds the
address: the cluster's shards and weights come from `system.clusters` (once per
source, so a batch pays it once) and the shard from `shard_key`, as the
Distributed engine picks it (`clickhouse_schema.shard_of`); that shard's replicas
are tried in turn.  If none answers, the Distributed table is read instead.
"""

from __future__ import annotations

import math
import re

from ulogpy.db.clickhouse_schema import (
    LEGACY,
    LOOKBACK_S,
    address_bytes,
    address_text,
    shard_of,
    variant_for,
)
from ulogpy.db.clickhouse_sink import make_client, server_version
from ulogpy.db.clickhouse_uri import (
    DEFAULT_TABLE,
    ClickHouseTarget,
    ClickHouseUriError,
    parse_clickhouse_uri,
)
from ulogpy.tools.natlookup.errors import LookupFailed
from ulogpy.tools.natlookup.flows import START_SLACK_S, Flow, Query
from ulogpy.tools.natlookup.sql import ROW_LIMIT, truncation_note

PREFIX = "clickhouse://"
_DISTRIBUTED = re.compile(r"Distributed\(\s*'?(\w+)'?\s*,\s*'?(\w+)'?\s*,\s*'?(\w+)'?")
NEW, DESTROY = 1, 4
UNKNOWN_START = 2  # start_exact: the row's `start` is its end (no start was known)


def lookup_sql(table: str, variant: str, q: Query) -> tuple[str, dict]:
    """The statement (pyformat parameters) for `q`: one row per flow."""
    addr = "IPv6StringToNum(%(ip)s)" if variant == LEGACY else "toIPv6(%(ip)s)"
    raddr = addr.replace("ip)s", "rip)s")
    where = [f"reply_daddr = {addr}"]
    params: dict = {"ip": _mapped(q.ip), "lo": int(math.floor(q.lo)),
                    "first": int(math.floor(q.lo)) - LOOKBACK_S,
                    "hi": int(math.floor(q.hi + START_SLACK_S)) + 1, "limit": ROW_LIMIT}
    if q.port is not None:
        where.append("reply_dport = %(port)s")
        params["port"] = q.port
    if q.proto is not None:
        where.append("proto = %(proto)s")
        params["proto"] = q.proto
    if q.remote_ip is not None:
        where.append(f"orig_daddr = {raddr}")
        params["rip"] = _mapped(q.remote_ip)
    if q.remote_port is not None:
        where.append("orig_dport = %(rport)s")
        params["rport"] = q.remote_port
    sql = (
        "SELECT firewall, ct_id, proto, IPv6NumToString(orig_saddr), orig_sport,"
        " IPv6NumToString(orig_daddr), orig_dport, IPv6NumToString(reply_daddr), reply_dport,"
        " minIf(toFloat64(start) + start_us / 1000000, start_exact = 1),"
        " countIf(start_exact = 1),"
        " minIf(toFloat64(start) + start_us / 1000000, start_exact = 0),"
        " countIf(start_exact = 0),"
        " maxIf(toFloat64(end) + end_us / 1000000, event = 4) AS last_end,"
        " countIf(event = 4) AS ends,"
        " maxIf(orig_bytes, event = 4), maxIf(reply_bytes, event = 4),"
        " anyLast(mark), any(zone)"
        f" FROM {table}"
        f" WHERE {' AND '.join(where)}"
        " AND start >= toDateTime(%(first)s) AND start <= toDateTime(%(hi)s)"
        " GROUP BY firewall, ct_id, proto, orig_saddr, orig_sport, orig_daddr, orig_dport,"
        " reply_daddr, reply_dport"
        " HAVING ends = 0 OR last_end >= %(lo)s"
        " ORDER BY max(start) DESC LIMIT %(limit)s"
    )
    return sql, params


def _mapped(text: str) -> str:
    """An address as the IPv6 text of the table's 16 bytes (IPv4 mapped)."""
    return text if ":" in text else f"::ffff:{text}"


def rows_to_flows(rows: list[tuple], label: str) -> list[Flow]:
    flows = []
    for (firewall, _ct_id, proto, isrc, isport, rdst, rdport, pub, pubport, kernel, kernels,
         received, receipts, end, ends, obytes, rbytes, mark, zone) in rows:
        # The kernel's start (a DESTROY's, or NEW's with exact_start) beats a reception time.
        start = float(kernel) if kernels else (float(received) if receipts else None)
        flows.append(Flow(
            proto=proto, inside_ip=_text(isrc), inside_port=isport, public_ip=_text(pub),
            public_port=pubport, remote_ip=_text(rdst), remote_port=rdport,
            start=start, end=float(end) if ends else None,
            orig_bytes=obytes if ends else None, reply_bytes=rbytes if ends else None,
            zone=zone, mark=mark, source=f"{label}#{firewall}" if firewall else label,
            start_exact=bool(kernels)))
    return flows


def _text(ipv6_text: str) -> str | None:
    try:
        return address_text(address_bytes(ipv6_text))
    except ValueError:
        return None


class ClickHouseSource:
    """One ClickHouse history; keeps its connections open across lookups (batches)."""

    def __init__(self, target: ClickHouseTarget) -> None:
        self.target = target
        self.table = target.table or DEFAULT_TABLE
        self.label = target.label
        self.notes: list[str] = []
        self.redact = target.redact
        self.client = None
        self.variant = LEGACY
        self.local: str | None = None  # the shards' table behind a Distributed one
        self.shards: list[tuple[int, list[tuple[str, int]]]] = []  # (weight, replicas)
        self.shard_clients: dict[int, object] = {}
        #: Which shard (0-based) answered the last lookup; None: the Distributed table.
        self.last_shard: int | None = None

    @classmethod
    def from_uri(cls, text: str) -> ClickHouseSource:
        try:
            return cls(parse_clickhouse_uri(text))
        except ClickHouseUriError as exc:
            raise LookupFailed(f"--source: {exc}") from None

    def _connect(self) -> None:
        if self.client is not None:
            return
        client = make_client(self.target)
        try:
            self.variant = variant_for(server_version(client))
            found = client.execute(
                "SELECT engine, engine_full FROM system.tables WHERE database = %(d)s "
                "AND name = %(t)s", {"d": self.target.database, "t": self.table})
            if not found:
                raise LookupFailed(f"{self.label}: no table {self.target.database}."
                                   f"{self.table} (`ulogpy db init --clickhouse URL`, or "
                                   "give ?table=NAME)")
            engine, full = found[0]
            m = _DISTRIBUTED.search(full or "") if engine == "Distributed" else None
            if m:
                cluster, database, local = m.groups()
                rows = client.execute(
                    "SELECT shard_num, shard_weight, host_name, port FROM system.clusters "
                    "WHERE cluster = %(c)s ORDER BY shard_num, replica_num", {"c": cluster})
                shards: dict[int, tuple[int, list]] = {}
                for num, weight, host, port in rows:
                    shards.setdefault(num, (weight, []))[1].append((host, port))
                self.shards = [shards[n] for n in sorted(shards)]
                self.local = f"{database}.{local}"
        except LookupFailed:
            client.disconnect()
            raise
        except Exception as exc:
            client.disconnect()
            raise LookupFailed(f"{self.label}: cannot reach ClickHouse: "
                               f"{self.redact(_first_line(exc))}") from None
        self.client = client

    def fork(self) -> ClickHouseSource:
        """Another source on the same table, with connections of its own (a thread's)."""
        return ClickHouseSource(self.target)

    def _shard_client(self, index: int):
        client = self.shard_clients.get(index)
        if client is None:
            replicas = self.shards[index][1]
            target = ClickHouseTarget(tuple(replicas), self.target.database,
                                      self.target.user, self.target.password)
            client = self.shard_clients[index] = make_client(target)
        return client

    def lookup(self, q: Query) -> list[Flow]:
        self._connect()
        rows = None
        if self.local and self.shards:
            index = shard_of(address_bytes(q.ip), [w for w, _ in self.shards])
            sql, params = lookup_sql(self.local, self.variant, q)
            try:
                rows = self._shard_client(index).execute(sql, params)
                self.last_shard = index
            except Exception:  # that shard is away: the Distributed table may still answer
                self.shard_clients.pop(index, None)
                rows = None
        if rows is None:
            self.last_shard = None
            sql, params = lookup_sql(f"{self.target.database}.{self.table}", self.variant, q)
            try:
                rows = self.client.execute(sql, params)
            except Exception as exc:
                self.close()
                raise LookupFailed(f"{self.label}: query failed: "
                                   f"{self.redact(_first_line(exc))}") from None
        self.notes.extend(truncation_note(len(rows), self.label))
        return rows_to_flows(rows, self.label)

    def close(self) -> None:
        for client in [self.client, *self.shard_clients.values()]:
            if client is not None:
                try:
                    client.disconnect()
                except Exception:
                    pass
        self.client = None
        self.shard_clients = {}


def _first_line(exc: Exception) -> str:
    text = " ".join((str(exc).strip() or type(exc).__name__).split())
    return text.split(". Stack trace:")[0][:300]
