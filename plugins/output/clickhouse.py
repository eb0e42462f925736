"""CLICKHOUSE: every firewall's NAT history in one ClickHouse cluster (ulogpy's own).

One row per conntrack event (NEW and DESTROY), append-only, never an UPDATE, into
the table `ulogpy db init --clickhouse URL [--cluster NAME]` creates (the schema and
the sharding are in `ulogpy.db.clickhouse_schema`).  Addresses are taken raw from
NFCT (no IP2STR needed).  Rows go in large blocks, `batch_rows` rows or after
`batch_delay_ms`, whichever comes first; while the cluster is away they wait in
memory, then in the spool (the default policy), and a failed block is resent
identically so ReplicatedMergeTree's deduplication keeps each row once.  With a
cluster, rows go through the Distributed table, which puts them on the shard of
their public address; a lookup then reads only that shard (`nat-lookup --source
clickhouse://...`).  With NFCT's `exact_start=1` (kernels >= 6.14), a NEW row's
start is the kernel's own time stamp of the event, not the time it was received, and
the lookup allows no reception delay for it (`start_exact`).

    [global]
    stack=ct1:NFCT,ch1:CLICKHOUSE
    [ct1]
    hash_enable=0
    event_mask=5
    conntrack_acct=1
    conntrack_timestamp=1
    exact_start=1
    [ch1]
    url="clickhouse://ulogpy:secret@ch1:9000,ch2:9000/nat"
    table="ulog_nat"
    cluster="fleet"
    firewall="fw-paris-1"
"""

from __future__ import annotations

import os
import socket

from ulogpy.core.keys import IPADDR, U8, U16, U32, U64, Key, keys
from ulogpy.core.plugin import DataType, Option, OutputPlugin, PluginError
from ulogpy.db.clickhouse_schema import row_builder
from ulogpy.db.clickhouse_sink import ClickHouseSink
from ulogpy.db.clickhouse_uri import (
    DEFAULT_TABLE,
    FORM,
    ClickHouseUriError,
    check_ident,
    parse_clickhouse_uri,
)
from ulogpy.delivery.options import queue_options


def _url(value: str) -> str | None:
    try:
        parse_clickhouse_uri(value)
    except ClickHouseUriError as exc:
        return str(exc)
    return None


def _ident(value: str) -> str | None:
    if not value:
        return None
    try:
        check_ident(value, "name")
    except ClickHouseUriError as exc:
        return str(exc)
    return None


def _positive(value: int) -> str | None:
    return None if value > 0 else "must be greater than 0"


class CLICKHOUSE(OutputPlugin):
    name = "CLICKHOUSE"
    description = "conntrack events into a ClickHouse (cluster) table, for nat-lookup"
    input_type = DataType.FLOW
    section_required = True
    options = (
        Option("url", str, "", mandatory=True, check=_url, ulogd=False, help=FORM),
        Option("table", str, DEFAULT_TABLE, check=_ident, ulogd=False,
               help="the table (with a cluster: the Distributed table)"),
        Option("cluster", str, "", check=_ident, ulogd=False,
               help="cluster name (ON CLUSTER, Distributed); empty: one server"),
        Option("firewall", str, "", ulogd=False,
               help="this firewall's name in every row (default: the host name)"),
        Option("batch_rows", int, 5000, check=_positive, ulogd=False,
               help="rows per insert block, at most"),
        Option("batch_delay_ms", int, 1000, check=_positive, ulogd=False,
               help="longest wait for a full block before inserting what there is"),
        Option("reconnect_max", int, 30, check=_positive, ulogd=False,
               help="longest wait between reconnect attempts, in seconds"),
        Option("flush_timeout", int, 5, ulogd=False,
               help="seconds to flush at exit before spooling the rest"),
        *queue_options(size=100_000, policy="spool"),
    )
    input_keys = keys(
        ("orig.ip.saddr", IPADDR), ("orig.ip.daddr", IPADDR), ("orig.ip.protocol", U8),
        ("orig.l4.sport", U16, True), ("orig.l4.dport", U16, True),
        ("orig.raw.pktlen", U64, True), ("orig.raw.pktcount", U64, True),
        ("reply.ip.saddr", IPADDR), ("reply.ip.daddr", IPADDR),
        ("reply.l4.sport", U16, True), ("reply.l4.dport", U16, True),
        ("reply.raw.pktlen", U64, True), ("reply.raw.pktcount", U64, True),
        ("ct.mark", U32, True), ("ct.id", U32, True), ("ct.event", U32),
        ("flow.start.sec", U32, True), ("flow.start.usec", U32, True),
        ("flow.end.sec", U32, True), ("flow.end.usec", U32, True),
        Key("flow.start.ns", U64, True, ulogd=False),
    )

    def configure(self) -> None:
        cfg = self.config
        try:
            target = parse_clickhouse_uri(cfg.url)
        except ClickHouseUriError as exc:  # already checked; kept for direct use
            raise PluginError(f"{self}: option 'url': {exc}") from None
        firewall = cfg.firewall or socket.gethostname()
        state = os.path.join(cfg.spool_dir, f"{self.id}.clickhouse-block")
        self.transport = ClickHouseSink(label=str(self), target=target, table=cfg.table,
                                        build=row_builder(firewall),
                                        state_file=state if cfg.queue_policy == "spool" else None)

    def batching(self) -> tuple[int, float]:
        return self.config.batch_rows, self.config.batch_delay_ms / 1000.0

    def backoff(self) -> tuple[float, float]:
        return 0.5, float(self.config.reconnect_max)

    def stop_timeout(self) -> float:
        return float(self.config.flush_timeout)
