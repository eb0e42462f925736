"""The queue between the reader thread and the database writer thread.

Bounded memory first; once memory is full, rows go to the on-disk spool,
and keep going there until the writer has caught up with it, so order is
never broken: memory holds the oldest rows, then the spool, then nothing
newer is in memory until the spool is drained.  `put` never blocks on the
database: its only slow path is an append to a local file.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

from ulogpy.delivery.spool import Spool

log = logging.getLogger("ulogpy.db")

MEMORY = "memory"
SPOOL = "spool"


class Backlog:
    def __init__(self, memory_rows: int, spool: Spool | None, label: str, counters) -> None:
        self.memory_rows = max(1, memory_rows)
        self.spool = spool
        self.label = label
        self.counters = counters  # reader-side counters: queued, spooled, dropped
        self.mem: deque[dict] = deque()
        self.cond = threading.Condition()
        self.spilling = bool(spool and spool.rows_on_disk)
        self.stopping = False
        self._drop_logged = False

    # -- reader side ------------------------------------------------------------------
    def put(self, record: dict) -> None:
        with self.cond:
            if not self.spilling and len(self.mem) < self.memory_rows:
                self.mem.append(record)
                if len(self.mem) == 1:
                    self.cond.notify()
                self.counters.add("queued")
                return
            if self.spool is None:
                self._drop("memory queue full and no spool")
                return
            try:
                self.spool.append(record)
            except OSError as exc:
                self._drop(f"spool failed: {exc}")
                return
            if not self.spilling:
                self.spilling = True
                log.warning("%s: memory queue full (%d rows), spooling to %s",
                            self.label, self.memory_rows, self.spool.dir)
                self.cond.notify()
            self._drop_logged = False
            self.counters.add("queued")
            self.counters.add("spooled")

    def _drop(self, why: str) -> None:
        self.counters.add("dropped")
        if not self._drop_logged:
            self._drop_logged = True
            log.error("%s: dropping rows: %s", self.label, why)

    def flush(self) -> None:
        """Make what was spooled readable (called after each batch of events)."""
        if self.spilling and self.spool is not None:
            try:
                self.spool.flush()
            except OSError as exc:
                self._drop(f"spool flush failed: {exc}")

    def pending(self) -> int:
        on_disk = self.spool.rows_on_disk if self.spool is not None else 0
        return len(self.mem) + on_disk

    # -- writer side ------------------------------------------------------------------
    def take(self, max_rows: int, timeout: float) -> tuple[str, list[dict]]:
        """The oldest rows (from one source), waiting up to `timeout` for some."""
        with self.cond:
            if not self.mem and not self.spilling and not self.stopping:
                self.cond.wait(timeout)
            if self.mem:
                n = min(max_rows, len(self.mem))
                popleft = self.mem.popleft
                return MEMORY, [popleft() for _ in range(n)]
            if not self.spilling or self.spool is None:
                return MEMORY, []
            if not self.spool.has_unread():
                # Caught up: back to memory (nothing is in flight while we hold the lock).
                self.spool.clear()
                self.spilling = False
                log.info("%s: spool drained", self.label)
                return MEMORY, []
        return SPOOL, self.spool.read(max_rows)

    def done(self, source: str, count: int) -> None:
        """The first `count` rows of the last `take` are stored."""
        if source == SPOOL and self.spool is not None and count:
            self.spool.commit(count)

    def give_back(self, source: str, rows: list[dict]) -> None:
        """Rows that could not be stored go back to the head of the queue."""
        if source == SPOOL:
            if self.spool is not None:
                self.spool.rewind()
            return
        with self.cond:
            self.mem.extendleft(reversed(rows))

    def wake(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def drain_memory(self) -> list[dict]:
        with self.cond:
            rows = list(self.mem)
            self.mem.clear()
            return rows
