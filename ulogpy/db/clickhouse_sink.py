"""ClickHouse through clickhouse-driver (the native protocol), as a transport of the
delivery model (blocking calls, written from the output's thread).

Why the native protocol: `clickhouse-connect` (HTTP) cannot talk to Debian's 18.16,
while clickhouse-driver works with 18.16 and with current servers, sends blocks in
ClickHouse's own column format (no text parsing on the server), and fails over
between the URL's hosts by itself (`alt_hosts`).

Retries are safe because a retried block is the identical block: when an insert
fails, the number of rows it held is kept, and the next write sends exactly those
rows (they come back first, in order, from the writer's queue or spool) as one
block before anything newer.  ReplicatedMergeTree recognises a block it has already
stored (by its checksum) and drops it, so a block whose insert went in but whose
answer was lost is stored once.  Inserts through the Distributed table are
synchronous (`insert_distributed_sync`): when the insert returns, the rows are on
their shards, not waiting on the disk of whichever server took them.  The failed
block's size is kept in a small file beside the spool (`state_file`), so a restart
while its rows wait in the spool still resends exactly that block first.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from ulogpy.core.plugin import Unavailable
from ulogpy.db.clickhouse_schema import COLUMN_NAMES, variant_for
from ulogpy.db.clickhouse_uri import ClickHouseTarget

log = logging.getLogger("ulogpy.db")
CONNECT_TIMEOUT_S = 5
SEND_RECEIVE_TIMEOUT_S = 60
INSERT_SETTINGS = {"insert_distributed_sync": 1, "insert_deduplicate": 1}


def make_client(target: ClickHouseTarget, **settings):
    from clickhouse_driver import Client

    return Client(**target.client_args(), connect_timeout=CONNECT_TIMEOUT_S,
                  send_receive_timeout=SEND_RECEIVE_TIMEOUT_S, settings=settings or None,
                  client_name="ulogpy")


def server_version(client) -> tuple[int, ...]:
    text = client.execute("SELECT version()")[0][0]
    return tuple(int(p) for p in text.split(".")[:3] if p.isdigit())


class ClickHouseSink:
    """`database.table` (a Distributed or a MergeTree table) as an append-only sink."""

    nonblocking = False

    def __init__(self, *, label: str, target: ClickHouseTarget, table: str,
                 build: Callable[[dict], tuple], state_file: str | None = None) -> None:
        self.label = label
        self.target_url = target
        self.table = table
        self.target = f"{target.label.split('?')[0]}?table={table}"
        self.build = build
        self.redact = target.redact
        self.client = None
        self.variant: str | None = None
        self.statement = f"INSERT INTO {target.database}.{table} ({', '.join(COLUMN_NAMES)}) VALUES"
        #: Where `pending` survives a restart (its rows wait in the spool meanwhile).
        self.state_file = state_file
        #: Rows of the block whose insert failed: the next write resends exactly them.
        self.pending = self._load_pending()
        self.rejected_logged = 0

    def open(self) -> None:
        self.close()
        client = make_client(self.target_url)
        try:
            version = server_version(client)
            found = client.execute(
                "SELECT engine FROM system.tables WHERE database = %(db)s AND name = %(t)s",
                {"db": self.target_url.database, "t": self.table})
        except Exception as exc:
            _disconnect(client)
            raise Unavailable(f"cannot reach ClickHouse: {self.redact(_text(exc))}") from None
        if not found:
            _disconnect(client)
            raise Unavailable(f"no table {self.target_url.database}.{self.table} (run "
                              f"`ulogpy db init --clickhouse URL`)")
        self.variant = variant_for(version)
        log.debug("%s: ClickHouse %s (%s schema), %s engine", self.label,
                  ".".join(map(str, version)), self.variant, found[0][0])
        self.client = client

    def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            _disconnect(client)

    def interrupt(self) -> None:
        self.close()

    def write(self, records: list) -> int:
        client = self.client
        if client is None:
            raise Unavailable("not connected")
        rows, bad = self._rows(records)
        if bad:  # refused rows are not part of any block: resend counts shift by them
            self.pending = max(0, self.pending - bad)
        blocks = [rows]
        if 0 < self.pending < len(rows):
            blocks = [rows[:self.pending], rows[self.pending:]]
        done = 0
        for block in blocks:
            if not block:
                continue
            try:
                client.execute(self.statement, block, settings=INSERT_SETTINGS)
            except Exception as exc:
                self._set_pending(len(block))
                raise Unavailable(f"insert failed: {self.redact(_text(exc))}",
                                  written=done) from None
            done += len(block)
            self._set_pending(0)
        return len(rows)

    # -- the failed block's size, kept across a restart --------------------------------
    def _load_pending(self) -> int:
        if not self.state_file:
            return 0
        try:
            with open(self.state_file) as f:
                return max(0, int(f.read().strip() or 0))
        except (OSError, ValueError):
            return 0

    def _set_pending(self, rows: int) -> None:
        if rows == self.pending:
            return
        self.pending = rows
        if not self.state_file:
            return
        try:
            if rows:
                os.makedirs(os.path.dirname(self.state_file) or ".", exist_ok=True)
                tmp = self.state_file + ".tmp"
                with open(tmp, "w") as f:
                    f.write(f"{rows}\n")
                os.replace(tmp, self.state_file)
            else:
                os.unlink(self.state_file)
        except FileNotFoundError:
            pass
        except OSError as exc:  # only a restart's dedup is at stake, not the rows
            log.warning("%s: cannot keep the failed block's size in %s: %s", self.label,
                        self.state_file, exc)

    def _rows(self, records: list) -> tuple[list[tuple], int]:
        rows, bad = [], 0
        build = self.build
        for record in records:
            try:
                rows.append(build(record))
            except (TypeError, ValueError) as exc:
                bad += 1
                self.rejected_logged += 1
                if self.rejected_logged <= 5:
                    log.error("%s: record rejected: %s", self.label, exc)
        return rows, bad


def _disconnect(client) -> None:
    try:
        client.disconnect()
    except Exception:
        pass


def _text(exc: Exception) -> str:
    text = " ".join((str(exc).strip() or type(exc).__name__).split())
    return text.split(". Stack trace:")[0][:300]
