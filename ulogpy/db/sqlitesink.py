"""SQLite in the writer thread: ulogd's table layout, batched transactions, WAL.

Unlike ulogd 2.0.8 (spec 6.7, O7): integers keep their value (unsigned
32-bit values stay positive), rows go in one transaction per batch, and a
full, read-only or failing disk is an outage like a database that went
away: reported once, rows kept in the backlog, retried with backoff after
reopening the file.  Constraint and type errors reject only their row.

`merge_flows` gives INSERT_OR_REPLACE_CT's semantics in SQLite: a DESTROY
event updates the flow's open row (same tuple, `ct_event < 4`) with its
counters, mark, end time and event; any other event inserts a row.  Unlike
the PostgreSQL function, the tuple is compared with `IS` (so ICMPv6 flows,
which have no ports, merge too) and a DESTROY that finds no open row is
inserted instead of being lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from itertools import chain
from operator import itemgetter

from ulogpy.core.keys import Key, KeyType
from ulogpy.core.plugin import Unavailable
from ulogpy.db import sqlitemerge
from ulogpy.db.columns import ColumnError, map_columns
from ulogpy.db.render import Render, row_builder, sqlite_renderer
from ulogpy.db.sqlitemerge import DestroyBatch, quote

log = logging.getLogger("ulogpy.db")

BUSY_TIMEOUT_S = 0.3  # ulogd's 300 ms
#: SQLite's page cache (KiB; SQLite's own default is 2 MiB).  Why: a flow history's
#: indexes take inserts all over, and with a small cache their pages are read back from
#: the file again and again (100,000 flows, 500-row transactions: 22 us of system time
#: per NEW row with 2 MiB, 15 with 8 MiB).  With `SQLITE_BATCH_ROWS` (see there), 32 MiB
#: took a 60,000-flow burst from 0.92 pwrite64 + 0.52 pread64 per event to 0.68 + 0.23.
CACHE_KIB = 32768
#: SQLITE3's default `batch_rows` (the other databases': 500).  Why: every commit writes
#: each page it changed to the WAL, one pwrite64 each, and a flush of the conntrack
#: table sends DESTROYs in hash order, so each completes a row on a page of its own.
#: Measured in-process on the shipped config's history stack (60,000 UDP flows, NEW in
#: order, DESTROY shuffled, nothing spooled): 500-row transactions with an 8 MiB cache
#: cost 2.64 pwrite64 + 0.80 pread64 and 10-11.6 us of system time per event; 5000-row
#: transactions with 32 MiB, 0.68 + 0.23 and 4.8 us.  A quiet daemon still commits what
#: it has within `COMMIT_DELAY_S`; rows wait in memory until then, as before.
SQLITE_BATCH_ROWS = 5000
#: Longest wait for a full batch (`batch_rows`) before committing what came (SQLITE3's
#: `batching`).  Why: each commit writes every page it changed to the WAL, and a flow
#: history's rows change pages of five B-trees, so the pages per row grow as the
#: transactions shrink.  Measured on 100,000 flows (NEW, then DESTROY merged in),
#: ext4: 10-row transactions cost 1.86 pwrite64 and 24.6 us of system time per row,
#: 50-row 0.69 and 7.2, 500-row 0.21 and 2.9 (0.07 pread64 per row in all).  A writer
#: that keeps up with a burst takes what is there, a few rows at a time; waiting this
#: long for more keeps transactions large at burst rates.  A quiet daemon commits each
#: row within this delay; at exit and before SIGHUP nothing waits.
COMMIT_DELAY_S = 0.25
#: Rows per multi-row INSERT, at most (and at most SQLITE_MAX_VARIABLES values).  Why:
#: one statement step per chunk instead of one per row; 100,000 flow rows in 500-row
#: transactions took 6.5 us per row one by one (execute or executemany) and 4.0 in
#: 64-row INSERTs, and the GIL is released once per chunk, not once per row.
INSERT_CHUNK = 64
#: The bound-parameter limit of SQLite before 3.32 (999); later versions allow more.
SQLITE_MAX_VARIABLES = 999
#: Set on every connection, after WAL.  synchronous=NORMAL: in WAL mode a commit is
#: safe from a crash of the daemon, and the file from a power loss (which may cost the
#: last commits); cache_size bounds the page cache.
PRAGMAS = ("synchronous=NORMAL", f"cache_size=-{CACHE_KIB}")
#: Error codes that concern one row; anything else is the file, the disk or a lock.
ROW_ERRORS = {sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_TOOBIG,
              sqlite3.SQLITE_RANGE}
LOGGED_REJECTS = 5
DESTROY = 4
#: INSERT_OR_REPLACE_CT's flow identity and the columns a DESTROY updates.
MATCH_COLUMNS = ("oob_family", "orig_ip_saddr_str", "orig_ip_saddr", "orig_ip_daddr_str",
                 "orig_ip_daddr", "orig_ip_protocol", "orig_l4_sport", "orig_l4_dport",
                 "reply_ip_saddr_str", "reply_ip_saddr", "reply_ip_daddr_str",
                 "reply_ip_daddr", "reply_ip_protocol", "reply_l4_sport", "reply_l4_dport",
                 "icmp_code", "icmp_type")
UPDATE_COLUMNS = ("orig_raw_pktlen", "orig_raw_pktcount", "reply_raw_pktlen",
                  "reply_raw_pktcount", "ct_mark", "flow_end_sec", "flow_end_usec", "ct_event")


def values_at(positions: Sequence[int]) -> Callable[[tuple], tuple]:
    """A row's values at `positions`, as a tuple (itemgetter: one C call, where it gives
    a tuple, that is for two positions or more)."""
    if len(positions) >= 2:
        return itemgetter(*positions)
    return lambda row: tuple([row[i] for i in positions])


def is_row_error(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in ROW_ERRORS


class SqliteSink:
    """An SQLite table as a transport of the delivery model (written from a thread)."""

    nonblocking = False

    def __init__(self, *, label: str, path: str, table: str, stack_keys: Sequence[Key],
                 merge_flows: bool = False, create_sql: str | None = None,
                 renderer: Callable[[KeyType], Render | None] = sqlite_renderer,
                 first_is_id: bool = False) -> None:
        self.label = label
        self.path = path
        self.target = f"{path} table {table}"
        self.table = table
        self.stack_keys = list(stack_keys)
        self.merge = merge_flows
        self.create_sql = create_sql
        self.renderer = renderer
        self.first_is_id = first_is_id
        self.conn: sqlite3.Connection | None = None
        self.rejected_logged = 0

    # -- connection -------------------------------------------------------------------
    def open(self) -> None:
        self.close()
        try:
            parent = os.path.dirname(self.path)
            if parent:
                os.makedirs(parent, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)
        except (sqlite3.Error, OSError) as exc:
            raise Unavailable(f"can't open {self.path}: {exc}") from None
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                log.warning("%s: %s stays in journal mode %s", self.label, self.path, mode)
            for pragma in PRAGMAS:
                conn.execute(f"PRAGMA {pragma}")
            if self.create_sql:
                conn.executescript(self.create_sql)
            self._discover(conn)
            if self.merge and self.destroys is not None:
                self.destroys.prepare(conn)
        except (sqlite3.Error, ColumnError) as exc:
            conn.close()
            raise Unavailable(f"{self.path}: {exc}") from None
        self.conn = conn

    def _discover(self, conn: sqlite3.Connection) -> None:
        names = [row[1] for row in conn.execute("SELECT * FROM pragma_table_info(?)",
                                                (self.table,))]
        if not names:
            raise ColumnError(f"table `{self.table}' is empty or missing in file "
                              f"`{self.path}'")
        active = map_columns(names, self.stack_keys, self.first_is_id)
        cols = [c.name for c in active]
        self.build = row_builder([(c.key, self.renderer(c.type)) for c in active])
        table = quote(self.table)
        values = f"({', '.join('?' * len(cols))})"
        self.insert = f"INSERT INTO {table} ({', '.join(map(quote, cols))}) VALUES {values}"
        self.chunk = max(1, min(INSERT_CHUNK, SQLITE_MAX_VARIABLES // len(cols)))
        self.insert_chunk = self.insert + f", {values}" * (self.chunk - 1)
        if self.merge:
            self._plan_merge(cols)

    def _plan_merge(self, cols: list[str]) -> None:
        if "ct_event" not in cols:
            raise ColumnError(f"merge_flows needs a ct_event column in `{self.table}'")
        pos = {c: i for i, c in enumerate(cols)}
        match = [c for c in MATCH_COLUMNS if c in pos]
        if not match:
            raise ColumnError(f"merge_flows needs the flow's columns in `{self.table}' "
                              f"(any of {', '.join(MATCH_COLUMNS)})")
        update = [c for c in UPDATE_COLUMNS if c in pos]
        self.event_at = pos["ct_event"]
        self.update = (
            f"UPDATE {quote(self.table)} SET "
            + ", ".join(f"{quote(c)} = ?" for c in update)
            + " WHERE " + " AND ".join(f"{quote(c)} IS ?" for c in match)
            + " AND ct_event < 4"
        )
        #: A row's values for `self.update` (its SET, then its WHERE); its flow.
        self.update_values = values_at([pos[c] for c in update] + [pos[c] for c in match])
        self.flow_of = values_at([pos[c] for c in match])
        self.destroys = DestroyBatch(self.table, update, match) if sqlitemerge.available() \
            else None

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def interrupt(self) -> None:
        conn = self.conn
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.interrupt()

    # -- writing ----------------------------------------------------------------------
    def write(self, records: list[dict]) -> int:
        conn = self.conn
        if conn is None:
            raise Unavailable("not open")
        rows = [self.build(r) for r in records]
        try:
            conn.execute("BEGIN IMMEDIATE")
            if self.merge:
                self._merge_rows(conn, rows)
            else:
                self._insert_rows(conn, rows)
            conn.execute("COMMIT")
            return len(rows)
        except sqlite3.Error as exc:
            self._rollback(conn)
            if not is_row_error(exc):
                raise Unavailable(f"{self.path}: {exc}") from None
        return self._one_by_one(conn, rows)

    def _insert_rows(self, conn: sqlite3.Connection, rows: list[tuple]) -> None:
        """Insert `rows` in order: full chunks as multi-row INSERTs, the rest one by one."""
        chunk, insert_chunk = self.chunk, self.insert_chunk
        full = len(rows) - len(rows) % chunk
        for start in range(0, full, chunk):
            conn.execute(insert_chunk, list(chain.from_iterable(rows[start:start + chunk])))
        if full < len(rows):
            conn.executemany(self.insert, rows[full:])

    def _merge_rows(self, conn: sqlite3.Connection, rows: list[tuple]) -> None:
        """`_merge_row` for each row, in order: runs of DESTROYs in batches
        (`ulogpy.db.sqlitemerge`), every row sent before a batch stored before it."""
        batches = self.destroys
        if batches is None:
            return self._merge_rows_one_by_one(conn, rows)
        pending: list[tuple] = []  # rows to insert, in order
        batch: list[tuple] = []  # consecutive DESTROYs, of different flows
        flows: set[tuple] = set()
        event_at, flow_of, update_values = self.event_at, self.flow_of, self.update_values

        def complete() -> None:
            missed = batches.apply(conn, [update_values(row) for row in batch])
            pending.extend(batch[i] for i in missed)
            batch.clear()
            flows.clear()

        for row in rows:
            if row[event_at] != DESTROY:
                if batch:
                    complete()
                pending.append(row)
                continue
            flow = flow_of(row)
            if flow in flows or len(batch) == batches.size:
                complete()
            if not batch and pending:
                self._insert_rows(conn, pending)
                pending = []
            batch.append(row)
            flows.add(flow)
        if batch:
            complete()
        if pending:
            self._insert_rows(conn, pending)
        return None

    def _merge_rows_one_by_one(self, conn: sqlite3.Connection, rows: list[tuple]) -> None:
        """`_merge_row` for each row, in order, with the inserts between two DESTROYs
        that complete a row sent together (an UPDATE must see every row before it)."""
        pending: list[tuple] = []
        for row in rows:
            if row[self.event_at] == DESTROY:
                if pending:
                    self._insert_rows(conn, pending)
                    pending = []
                cur = conn.execute(self.update, self.update_values(row))
                if cur.rowcount > 0:
                    continue
            pending.append(row)
        if pending:
            self._insert_rows(conn, pending)

    def _merge_row(self, conn: sqlite3.Connection, row: tuple) -> None:
        if row[self.event_at] == DESTROY:
            cur = conn.execute(self.update, self.update_values(row))
            if cur.rowcount > 0:
                return
        conn.execute(self.insert, row)

    def _rollback(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")

    def _one_by_one(self, conn: sqlite3.Connection, rows: list[tuple]) -> int:
        stored = 0
        for done, row in enumerate(rows):
            try:
                if self.merge:
                    conn.execute("BEGIN IMMEDIATE")
                    self._merge_row(conn, row)
                    conn.execute("COMMIT")
                else:
                    conn.execute(self.insert, row)
                stored += 1
            except sqlite3.Error as exc:
                self._rollback(conn)
                if not is_row_error(exc):
                    raise Unavailable(f"{self.path}: {exc}", written=done) from None
                self.rejected_logged += 1
                if self.rejected_logged <= LOGGED_REJECTS:
                    log.error("%s: row rejected by SQLite: %s", self.label, exc)
        return stored
