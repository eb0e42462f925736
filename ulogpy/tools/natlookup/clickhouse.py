"""ClickHouse history: the CLICKHOUSE output's table, through clickhouse-driver.

`clickhouse://[user[:pass]@]host[:port][,host2...]/db[?table=NAME]` (default
`ulog_nat`).  One query per lookup: equality on (reply_daddr, reply_dport) and a
range on `start` — the table's ORDER BY, so the primary key prunes to a few granules,
and the day partitions outside [at - LOOKBACK_S, at + window] are skipped.  The
lookback covers long-lived flows (conntrack's TCP established timeout is 5 days).
The rows of one flow (its NEW and DESTROY) are folded into one interval by the
server (GROUP BY the conntrack id and tuple), and flows that ended before the
window are left out there, so a busy CGNAT port reused thousands of times in six
days costs a few rows on the wire.  PREWHERE tests only `shard_key` and the port
(6 bytes a row; the address's 16 and the time wait for WHERE): on a history of many
parts each lookup reads a granule of every part of the lookback, and those narrow
columns are most of what it decompresses there.  This relies on `shard_key` being
the address's low 32 bits, as the CLICKHOUSE output writes it.

When the table is Distributed, the lookup reads only the shard that holds the
address: the cluster's shards and weights come from `system.clusters` (once per
source, so a batch pays it once) and the shard from `shard_key`, as the
Distributed engine picks it (`clickhouse_schema.shard_of`); that shard's replicas
are tried in turn.  If none answers, the Distributed table is read instead.

`lookup_many` answers a batch's chunk of complaints with a few statements per shard,
each giving the answers single lookups give.  Complaints of only (address, port,
time), sorted by time and cut into spans of GROUP_SPAN_S, share one statement
(`keyed_sql`): the primary key's `IN` over their keys, so each part of the table is
opened and its index searched once for the lot (on a history of many parts that, not
the rows, is a lookup's cost), and rows tagged per complaint with `arrayJoin`, then
grouped, filtered and limited per tag.  The others (proto, remote, no port) go as
their single statements joined by `UNION ALL` (`union_sql`): one round trip.  The
shards are asked at once, each on its own connection and thread (the driver waits
on the socket without the GIL), each statement on one server thread.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from ulogpy.db.clickhouse_schema import (
    LEGACY,
    LOOKBACK_S,
    address_bytes,
    address_text,
    shard_key,
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


#: One flow's interval from its rows (GROUP BY the conntrack id and tuple): the columns
#: `rows_to_flows` reads, in its order (a batch statement puts its tag before them).
_FLOW = (
    "firewall, ct_id, proto, IPv6NumToString(orig_saddr), orig_sport,"
    " IPv6NumToString(orig_daddr), orig_dport, IPv6NumToString(reply_daddr), reply_dport,"
    " minIf(toFloat64(start) + start_us / 1000000, start_exact = 1),"
    " countIf(start_exact = 1),"
    " minIf(toFloat64(start) + start_us / 1000000, start_exact = 0),"
    " countIf(start_exact = 0),"
    " maxIf(toFloat64(end) + end_us / 1000000, event = 4) AS last_end,"
    " countIf(event = 4) AS ends,"
    " maxIf(orig_bytes, event = 4), maxIf(reply_bytes, event = 4),"
    " anyLast(mark), any(zone)"
)
#: The lookup's range of `start`: the lookback before the window, the slack after it.
_TIME_RANGE = ("start >= toDateTime(%(first)s)", "start <= toDateTime(%(hi)s)")


def lookup_sql(table: str, variant: str, q: Query) -> tuple[str, dict]:
    """The statement (pyformat parameters) for `q`: one row per flow."""
    addr = "IPv6StringToNum(%(ip)s)" if variant == LEGACY else "toIPv6(%(ip)s)"
    raddr = addr.replace("ip)s", "rip)s")
    # PREWHERE reads its columns first, and the others only of granules where a row
    # passed (the lookback's partitions mostly have none): the narrowest columns that
    # still pass few rows, `shard_key` (the address's low 32 bits, 4 bytes a row
    # against 16) and the port.  WHERE then checks the whole address and the time, and
    # the primary key and the partitions are pruned by both clauses.
    prewhere = ["shard_key = %(key)s"]
    where: list[str] = [f"reply_daddr = {addr}", *_TIME_RANGE]
    params: dict = {"ip": _mapped(q.ip), "key": _key(q.ip), "lo": int(math.floor(q.lo)),
                    "first": int(math.floor(q.lo)) - LOOKBACK_S,
                    "hi": int(math.floor(q.hi + START_SLACK_S)) + 1, "limit": ROW_LIMIT}
    if q.port is not None:
        prewhere.append("reply_dport = %(port)s")
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
        f"SELECT {_FLOW}"
        f" FROM {table}"
        f" PREWHERE {' AND '.join(prewhere)} WHERE {' AND '.join(where)}"
        " GROUP BY firewall, ct_id, proto, orig_saddr, orig_sport, orig_daddr, orig_dport,"
        " reply_daddr, reply_dport"
        " HAVING ends = 0 OR last_end >= %(lo)s"
        " ORDER BY max(start) DESC LIMIT %(limit)s"
    )
    return sql, params


_PARAM = re.compile(r"%\((\w+)\)s")


def union_sql(table: str, variant: str, qs: Sequence[tuple[int, Query]]) -> tuple[str, dict]:
    """One statement answering each (tag, query): `lookup_sql`'s, each branch led by
    its tag column and given its own parameter names, joined by UNION ALL."""
    branches, params = [], {}
    for tag, q in qs:
        sql, p = lookup_sql(table, variant, q)
        sql = _PARAM.sub(lambda m, t=tag: f"%({m.group(1)}_{t})s", sql)
        branches.append(sql.replace("SELECT ", f"SELECT toUInt32({int(tag)}) AS q, ", 1))
        params |= {f"{k}_{tag}": v for k, v in p.items()}
    return " UNION ALL ".join(branches), params


#: A batch runs statements side by side (shards at once, chunks at once): one server
#: thread each spends less on starting threads for a few granules a part.
BATCH_SETTINGS = {"max_threads": 1}

#: A grouped statement's complaints lie within this of each other: it reads the day
#: partitions of the lookback plus this, not of the whole history, and still shares
#: each part among several complaints of a sparse batch.
GROUP_SPAN_S = 86400


def keyed_sql(table: str, variant: str, qs: Sequence[tuple[int, Query]]) -> str:
    """One statement for complaints that give only (address, port, time): the primary
    key's `IN` over all their (address, port) and the union of their time ranges, so
    each part of the table is opened once; each row is then tagged (`arrayJoin`) with
    the complaints whose own range holds it, and grouped, filtered and limited per tag
    exactly as `lookup_sql` does for one complaint."""
    addr = "IPv6StringToNum('{}')" if variant == LEGACY else "toIPv6('{}')"
    addrs = [addr.format(_mapped(q.ip)) for _, q in qs]  # make_query checked the text
    firsts = [int(math.floor(q.lo)) - LOOKBACK_S for _, q in qs]
    his = [int(math.floor(q.hi + START_SLACK_S)) + 1 for _, q in qs]
    los = [int(math.floor(q.lo)) for _, q in qs]
    keys = ", ".join(f"({a}, {int(q.port)})" for a, (_, q) in zip(addrs, qs, strict=True))
    short = ", ".join(f"({_key(q.ip)}, {int(q.port)})" for _, q in qs)
    return (
        f"WITH [{', '.join(addrs)}] AS qa, [{', '.join(str(int(q.port)) for _, q in qs)}]"
        f" AS qp, [{', '.join(map(str, firsts))}] AS qf, [{', '.join(map(str, his))}] AS qh,"
        f" [{', '.join(map(str, los))}] AS ql, [{', '.join(str(t) for t, _ in qs)}] AS qt"
        " SELECT qt[tag],"
        f" {_FLOW},"
        " arrayJoin(arrayFilter(i -> qa[i] = reply_daddr AND qp[i] = reply_dport"
        " AND toUInt32(start) >= qf[i] AND toUInt32(start) <= qh[i], arrayEnumerate(qa)))"
        " AS tag"
        f" FROM {table}"
        f" PREWHERE (shard_key, reply_dport) IN ({short})"
        f" WHERE (reply_daddr, reply_dport) IN ({keys})"
        f" AND start >= toDateTime({min(firsts)}) AND start <= toDateTime({max(his)})"
        " GROUP BY tag, firewall, ct_id, proto, orig_saddr, orig_sport, orig_daddr,"
        " orig_dport, reply_daddr, reply_dport"
        " HAVING ends = 0 OR last_end >= ql[tag]"
        f" ORDER BY tag, max(start) DESC LIMIT {ROW_LIMIT} BY tag"
    )


def _keyed(q: Query) -> bool:
    return q.port is not None and q.proto is None and q.remote_ip is None \
        and q.remote_port is None


def statements(table: str, variant: str, group: list[tuple[int, Query]]
               ) -> list[tuple[str, dict | None]]:
    """A shard's statements for its complaints: the keyed ones by time spans of
    GROUP_SPAN_S, the others (proto, remote, no port) as one UNION ALL."""
    out: list[tuple[str, dict | None]] = []
    keyed = sorted((x for x in group if _keyed(x[1])), key=lambda x: x[1].at)
    span: list[tuple[int, Query]] = []
    for item in keyed:
        if span and item[1].at - span[0][1].at > GROUP_SPAN_S:
            out.append((keyed_sql(table, variant, span), None))
            span = []
        span.append(item)
    if span:
        out.append((keyed_sql(table, variant, span), None))
    rest = [x for x in group if not _keyed(x[1])]
    if rest:
        out.append(union_sql(table, variant, rest))
    return out


def _key(text: str) -> int:
    """The address's `shard_key` column (its low 32 bits, as every writer stores it)."""
    return shard_key(address_bytes(text))


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

    def lookup_many(self, qs: Sequence[Query]) -> list[list[Flow]]:
        """The flows of each query (as `lookup` gives them): a few statements per shard,
        the shards queried at once (a thread and a connection each), each statement on
        one server thread (BATCH_SETTINGS)."""
        self._connect()
        groups: dict[int | None, list[tuple[int, Query]]] = {}
        for tag, q in enumerate(qs):
            index = (shard_of(address_bytes(q.ip), [w for w, _ in self.shards])
                     if self.local and self.shards else None)
            groups.setdefault(index, []).append((tag, q))
        shards = [i for i in groups if i is not None]
        if len(shards) > 1:
            with ThreadPoolExecutor(len(shards)) as ex:
                found = dict(zip(shards, ex.map(lambda i: self._on_shard(i, groups[i]),
                                                shards), strict=True))
        else:
            found = {i: self._on_shard(i, groups[i]) for i in shards}
        answers: list[list[Flow]] = [[] for _ in qs]
        for index, group in groups.items():
            rows = found.get(index)
            if rows is None:  # no shard, or it is away: the Distributed table may answer
                table = f"{self.target.database}.{self.table}"
                try:
                    rows = [r for sql, params in statements(table, self.variant, group)
                            for r in self.client.execute(sql, params)]
                except Exception as exc:
                    self.close()
                    raise LookupFailed(f"{self.label}: query failed: "
                                       f"{self.redact(_first_line(exc))}") from None
            by_tag: dict[int, list[tuple]] = {tag: [] for tag, _ in group}
            for row in rows:
                by_tag[row[0]].append(row[1:20])
            for tag, flows in by_tag.items():
                self.notes.extend(truncation_note(len(flows), self.label))
                answers[tag] = rows_to_flows(flows, self.label)
        return answers

    def _on_shard(self, index: int, group: list[tuple[int, Query]]) -> list[tuple] | None:
        """The rows of `group`'s statements from shard `index`, or None if it is away."""
        try:
            client = self._shard_client(index)
            return [r for sql, params in statements(self.local, self.variant, group)
                    for r in client.execute(sql, params, settings=BATCH_SETTINGS)]
        except Exception:
            self.shard_clients.pop(index, None)
            return None

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
