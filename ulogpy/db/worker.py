"""The writer thread: owns the database connection, drains the backlog in batches.

A `Sink` knows one database (PostgreSQL, SQLite); the worker knows when to
call it.  Connection failures and outages (`SinkDown`) put the batch back
at the head of the queue and retry with exponential backoff; an outage is
logged once when it starts and once when it ends.  Rows the database
refuses one by one (bad data) are counted as `rejected` and skipped by
the sink, so one bad row never blocks the queue.

Stopping: `stop(timeout)` lets the worker drain while the database takes
rows, up to `timeout` seconds; whatever is left (memory rows, a batch cut
short) is then written to the spool, so the next start replays it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ulogpy.db.backlog import MEMORY, Backlog

log = logging.getLogger("ulogpy.db")
NOTICE = 25


class SinkDown(Exception):
    """The database cannot take rows now.  `stored` rows of the batch went in first."""

    def __init__(self, message: str, stored: int = 0) -> None:
        super().__init__(message)
        self.stored = stored


class Sink:
    """One database.  All methods run in the worker thread, except `interrupt`."""

    label = "db"

    def connect(self) -> None:
        """Open the connection and discover the columns; raise SinkDown on failure."""

    def write(self, records: list[dict]) -> int:
        """Store the records in order; return how many were stored (the rest rejected)."""
        raise NotImplementedError

    def close(self) -> None:
        """Drop the connection (never raises)."""

    def interrupt(self) -> None:
        """Called from another thread when the worker is stuck past its stop deadline."""


class Worker:
    def __init__(self, sink: Sink, backlog: Backlog, counters, *, label: str,
                 batch_rows: int = 500, backoff: float = 2.0, backoff_max: float = 60.0,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.sink = sink
        self.backlog = backlog
        self.counters = counters  # writer-side: stored, replayed, rejected, reconnects
        self.label = label
        self.batch_rows = batch_rows
        self.backoff_max = max(0.1, float(backoff_max))
        self.backoff_min = min(max(0.1, float(backoff)), self.backoff_max)
        self.now = now
        self.connected = False
        self.ever_connected = False
        self.outage_since: float | None = None
        self.next_attempt = 0.0
        self.delay = self.backoff_min
        self.deadline: float | None = None
        self.in_flight: tuple[str, list[dict]] | None = None
        self.abandoned = False  # set by `stop` when it gave up waiting for the thread
        self.quit = False       # set by the thread itself when stopping is done
        self.reconnect_requested = False
        self.wakeup = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"db-{label}", daemon=True)

    # -- control (reader / main thread) -----------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def request_reconnect(self) -> None:
        """SIGHUP: reconnect and rediscover the columns, keeping every queued row."""
        self.reconnect_requested = True
        self.next_attempt = 0.0
        self.wakeup.set()
        self.backlog.wake()

    def stop(self, timeout: float) -> list[dict]:
        """Drain for up to `timeout` s; return rows from memory that must be spooled."""
        self.deadline = self.now() + max(0.0, timeout)
        with self.backlog.cond:
            self.backlog.stopping = True
            self.backlog.cond.notify_all()
        self.wakeup.set()
        self.thread.join(max(0.0, timeout) + 1.0)
        if self.thread.is_alive():
            log.error("%s: database writer still busy after %.0f s, interrupting",
                      self.label, timeout)
            self.sink.interrupt()
            self.thread.join(2.0)
        leftovers: list[dict] = []
        if self.thread.is_alive():
            self.abandoned = True
            flight = self.in_flight
            if flight is not None and flight[0] == MEMORY:
                leftovers.extend(flight[1])
        leftovers.extend(self.backlog.drain_memory())
        return leftovers

    # -- the thread -------------------------------------------------------------------
    def _stopping(self) -> bool:
        return self.deadline is not None

    def _past_deadline(self) -> bool:
        return self.deadline is not None and self.now() >= self.deadline

    def _run(self) -> None:
        try:
            while not self.abandoned and not self.quit:
                if self.reconnect_requested:
                    self.reconnect_requested = False
                    if self.connected:
                        log.log(NOTICE, "%s: reconnecting (signal)", self.label)
                        self._disconnect()
                if not self.connected:
                    if not self._try_connect():
                        continue
                    if self._stopping() and self.backlog.pending() == 0:
                        break
                if self._past_deadline():
                    break
                source, rows = self.backlog.take(self.batch_rows, 0.5)
                if not rows:
                    if self._stopping() and not self.backlog.mem and \
                            not self.backlog.spilling:
                        break
                    continue
                self._write(source, rows)
        except Exception:  # a bug must not silently stop the writer: log it loudly
            log.exception("%s: database writer failed", self.label)
        finally:
            self._disconnect()

    def _try_connect(self) -> bool:
        wait = self.next_attempt - self.now()
        if wait > 0:
            if self.deadline is not None and self.now() + wait > self.deadline:
                self.quit = True  # stopping, and no attempt is due before the deadline
                return False
            self.wakeup.wait(min(wait, 1.0))
            self.wakeup.clear()
            return False
        try:
            self.sink.connect()
        except SinkDown as exc:
            self._outage(str(exc))
            return False
        self.connected = True
        if self.outage_since is not None and self.backlog.pending() == 0:
            self._recovered()
        if self.ever_connected:
            self.counters.add("reconnects")
        self.ever_connected = True
        return True

    def _recovered(self) -> None:
        """The outage ends when rows go in again (a file that opens may still be full)."""
        self.delay = self.backoff_min
        if self.outage_since is not None:
            down = self.now() - self.outage_since
            log.log(NOTICE, "%s: database back after %.1f s, %d rows waiting",
                    self.label, down, self.backlog.pending())
            self.outage_since = None

    def _outage(self, message: str) -> None:
        self._disconnect()
        if self.outage_since is None:
            self.outage_since = self.now()
            log.error("%s: %s; keeping rows (%d waiting), retrying in %.0f s", self.label,
                      message, self.backlog.pending(), self.delay)
        else:
            log.debug("%s: still down: %s", self.label, message)
        self.counters.add("db_errors")
        self.next_attempt = self.now() + self.delay
        self.delay = min(self.delay * 2, self.backoff_max)

    def _disconnect(self) -> None:
        if self.connected:
            self.connected = False
        self.sink.close()

    def _write(self, source: str, rows: list[dict]) -> None:
        self.in_flight = (source, rows)
        try:
            stored = self.sink.write(rows)
        except SinkDown as exc:
            if self.abandoned:
                return
            done = max(0, min(exc.stored, len(rows)))
            if done:
                self._account(source, done, done)
                self.backlog.done(source, done)
            self.backlog.give_back(source, rows[done:])
            self._outage(str(exc))
            return
        finally:
            self.in_flight = None
        if self.abandoned:
            return
        self._account(source, len(rows), stored)
        self.backlog.done(source, len(rows))
        if self.outage_since is not None:
            self._recovered()

    def _account(self, source: str, handled: int, stored: int) -> None:
        self.counters.add("stored", stored)
        if handled > stored:
            self.counters.add("rejected", handled - stored)
        if source != MEMORY:
            self.counters.add("replayed", stored)
