"""The writer of one output: moves its buffered items to its transport.

Everything an output would otherwise write again lives here, once: batching
(up to `batch_max` items, waiting up to `delay` for more), opening and
reopening the transport, an outage logged once when it starts and once when
it ends, retries with exponential backoff while every item stays queued in
order, SIGHUP's reopen, and the counters (`written`, `rejected`,
`write_errors`, `reconnects`; the buffer counts `dropped`, `spooled` and
`replayed`).

Two drivers share that state machine.  `ThreadWriter` runs in a thread of
the output's own (files and databases, whose calls block).  `LoopWriter`
runs in the event loop, for a non-blocking transport (a socket): it writes
until the peer would block, then waits for the socket to become writable.

Stopping: the writer goes on while the destination takes items, up to the
output's stop timeout; whatever is left in memory then goes to the spool
(the next start replays it) or is counted as dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ulogpy.core.plugin import OutputPlugin, PluginError, Unavailable, WouldBlock
from ulogpy.daemon.ownlog import NOTICE
from ulogpy.delivery.buffer import MEMORY, Buffer

log = logging.getLogger("ulogpy.delivery")
#: How many unexpected failures of one output are logged in full before only counting.
LOGGED_FAILURES = 5


class Writer:
    """The state machine both drivers share (call only from the driver's context)."""

    def __init__(self, output: OutputPlugin, buffer: Buffer, *, batch_max: int, delay: float,
                 backoff: tuple[float, float], stop_timeout: float,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.output = output
        self.transport = output.transport
        self.buffer = buffer
        self.counters = output.counters
        self.batch_max = max(1, batch_max)
        self.delay = max(0.0, delay)
        buffer.wake_at = self.batch_max if self.delay else 1
        self.backoff_min = max(0.05, backoff[0])
        self.backoff_max = max(self.backoff_min, backoff[1])
        self.backoff = self.backoff_min
        self.stop_timeout = stop_timeout
        self.now = now
        self.up = False
        self.ever_up = False
        self.outage_since: float | None = None
        self.next_attempt = 0.0
        self.reopen_wanted = False
        #: What a non-blocking transport is waiting for (LoopWriter only).
        self.waiting: WouldBlock | None = None

    # -- opening ---------------------------------------------------------------------
    def try_open(self) -> bool:
        """Open the transport if it is due; False while down (see `next_attempt`)."""
        reopening = self.reopen_wanted
        if reopening:
            self.reopen_wanted = False
            notice = self.output.reopen_notice
            log.log(NOTICE, "%s", notice or f"{self.output}: reopening {self.transport.target}")
            self.close()
            self.next_attempt = 0.0
            self.backoff = self.backoff_min
        if self.up:
            return True
        if self.now() < self.next_attempt:
            return False
        try:
            self.transport.open()
        except Unavailable as exc:
            self.outage(str(exc))
            return False
        self.up = True
        if self.ever_up and not reopening:
            self.counters.add("reconnects")
        self.ever_up = True
        return True

    def open_at_start(self) -> None:
        """Open now if the output says it must (`open_error`: ulogd refuses to start
        without its file); PluginError with the output's words if it cannot."""
        words = getattr(self.output, "open_error", None)
        if words is None:
            return
        try:
            self.transport.open()
        except Unavailable as exc:
            raise PluginError(f"{words} {exc}") from None
        self.up = self.ever_up = True

    def outage(self, message: str) -> None:
        """The destination failed: close, count, log once per outage, back off."""
        self.close()
        self.counters.add("write_errors")
        if self.outage_since is None:
            self.outage_since = self.now()
            log.error("%s: %s; keeping records (%d waiting), retrying in %.1f s", self.output,
                      message, self.buffer.depth(), self.backoff)
        else:
            log.debug("%s: still failing: %s", self.output, message)
        self.next_attempt = self.now() + self.backoff
        self.backoff = min(self.backoff * 2, self.backoff_max)

    def recovered(self) -> None:
        """Items go in again: the outage (if any) is over."""
        self.backoff = self.backoff_min
        if self.outage_since is not None:
            log.log(NOTICE, "%s: %s takes records again after %.1f s; %d waiting",
                    self.output, self.transport.target, self.now() - self.outage_since,
                    self.buffer.depth())
            self.outage_since = None

    def close(self) -> None:
        if self.up:
            self.up = False
        try:
            self.transport.close()
        except Exception as exc:  # closing must not end the writer
            log.error("%s: close failed: %s", self.output, exc)

    # -- writing -----------------------------------------------------------------------
    def write(self, source: str, items: list) -> bool:
        """Write one batch and account for it; False when the rest must wait (given back)."""
        items = self.buffer.rows(source, items)
        if not items:  # (only spool lines that did not decode: counted `corrupt`)
            return True
        try:
            written = self.transport.write(items)
        except WouldBlock as exc:
            handled = exc.written + exc.rejected
            self._account(source, handled, exc.written)
            self.buffer.give_back(source, items[handled:], keep_head=exc.started)
            self.waiting = exc
            if exc.written:
                self.recovered()
            return False
        except Unavailable as exc:
            done = max(0, min(exc.written, len(items)))
            self._account(source, done, done)
            self.buffer.give_back(source, items[done:])
            self.outage(str(exc))
            return False
        except Exception as exc:  # a bug in the output: these items are lost, counted
            self._account(source, len(items), 0, failed=True)
            self.counters.add("failed", len(items))
            if self.counters.get("failed") <= LOGGED_FAILURES:
                log.error("%s failed on a batch of %d: %r", self.output, len(items), exc)
            return True
        self._account(source, len(items), written)
        self.recovered()
        self.buffer.caught_up()
        return True

    def _account(self, source: str, handled: int, written: int, failed: bool = False) -> None:
        if written:
            self.counters.add("written", written)
        if handled > written and not failed:
            self.counters.add("rejected", handled - written)
        self.buffer.done(source, handled)

    def keep_leftovers(self, items: list) -> None:
        """At exit: what never reached the destination goes to the spool, else is dropped."""
        spool = self.buffer.spool
        if not items:
            return
        if spool is not None:
            try:
                spool.prepend(items)  # older than whatever already overflowed to disk
            except OSError as exc:
                log.error("%s: cannot keep %d records in the spool: %s", self.output,
                          len(items), exc)
            else:
                self.counters.add("spooled", len(items))
                log.log(NOTICE, "%s: %d records not yet written saved to %s", self.output,
                        len(items), spool.dir)
                return
        self.buffer.drop(len(items), "left at exit")
        log.error("%s: %d records could not be written to %s", self.output, len(items),
                  self.transport.target)

    def finish(self) -> None:
        """After the driver stopped: close the spool (what it holds waits for next start)."""
        spool = self.buffer.spool
        if spool is not None:
            if spool.rows_on_disk:
                log.log(NOTICE, "%s: %d records wait in %s for the next start", self.output,
                        spool.rows_on_disk, spool.dir)
            spool.close()


class ThreadWriter(Writer):
    """A writer in a thread of its own, for transports whose calls block."""

    def __init__(self, output: OutputPlugin, buffer: Buffer, **kwargs: Any) -> None:
        super().__init__(output, buffer, **kwargs)
        #: (action, the buffer position it runs at: after the items handed over before it)
        self._controls: deque[tuple[Callable[[], None], int]] = deque()
        self._stopping = False
        self._deadline: float | None = None
        self._abandoned = False
        self._in_flight: tuple[str, list] | None = None
        self._thread = threading.Thread(target=self._run, name=f"output {output}", daemon=True)
        buffer.writer_alive = self._thread.is_alive

    def start(self) -> None:
        self._thread.start()

    def control(self, action: Callable[[], None]) -> None:
        """Run `action` in the writer's thread, after the items handed over before it."""
        self.buffer.hand_over()
        with self.buffer.cond:
            self._controls.append((action, self.buffer.consumed + self.buffer.count))
            self.buffer.cond.notify()

    def reopen(self) -> None:
        """SIGHUP: close and open again (logrotate, a reconnect), keeping every item."""
        self.control(self._want_reopen)

    def _want_reopen(self) -> None:
        self.reopen_wanted = True

    def _run(self) -> None:
        buffer, cond = self.buffer, self.buffer.cond
        try:
            while not self._abandoned:
                with cond:
                    controls = list(self._controls)
                    self._controls.clear()
                for action, position in controls:
                    self._write_until(position)  # the items handed over before it first
                    self._safely(action)
                if self._deadline is not None and self.now() >= self._deadline:
                    break
                if not self.try_open():
                    if self._stopping and (buffer.depth() == 0 or self._deadline is not None
                                           and self.next_attempt > self._deadline):
                        break  # nothing to write, or no attempt due before the deadline
                    self._sleep(max(0.0, self.next_attempt - self.now()))
                    continue
                with cond:
                    now = self.now()
                    if not (buffer.ready(self.delay, now) or self._controls or
                            self._stopping):
                        wait = None
                        if buffer.count:
                            wait = max(0.0, self.delay - (now - (buffer.since or now)))
                        cond.wait(wait)
                        continue
                    source, items = buffer.take(self.batch_max)
                if not items:
                    if self._stopping and not buffer.count and not buffer.spilling:
                        break
                    continue
                self._in_flight = (source, items)
                self.write(source, items)
                self._in_flight = None
                with cond:
                    cond.notify_all()  # room for a blocked reader
        except Exception:  # a bug must not stop the writer silently
            log.exception("%s: writer failed", self.output)
        finally:
            if not self._abandoned:
                self.close()

    def _write_until(self, position: int) -> None:
        """Write the items in memory up to `position`, while the destination takes them."""
        buffer = self.buffer
        while self.up and buffer.consumed < position:
            with buffer.cond:
                if not buffer.count:
                    return
                source, items = buffer.take(min(self.batch_max, position - buffer.consumed))
            if not self.write(source, items):
                return

    def _sleep(self, seconds: float) -> None:
        with self.buffer.cond:
            if not (self._controls or self._stopping):
                self.buffer.cond.wait(min(seconds, 1.0))

    def _safely(self, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as exc:
            log.error("%s: %s failed: %s", self.output, getattr(action, "__name__", action),
                      exc)

    def request_stop(self) -> None:
        """Start stopping: write what waits for up to the stop timeout, then end.  The
        runner asks every writer first, then waits for each, so they drain together."""
        self.buffer.hand_over()
        with self.buffer.cond:
            if self._deadline is None:
                self._stopping = True
                self._deadline = self.now() + self.stop_timeout
            self.buffer.cond.notify_all()

    def stop(self) -> bool:
        """Stop (see `request_stop`) and wait; False if the output stalled at exit."""
        self.request_stop()
        assert self._deadline is not None
        self._thread.join(max(0.0, self._deadline - self.now()) + 0.5)
        stalled = self._thread.is_alive()
        if stalled:
            log.error("%s: output stalled at exit (still writing after %.0f s)", self.output,
                      self.stop_timeout)
            interrupt = getattr(self.transport, "interrupt", None)
            if interrupt is not None:
                interrupt()
                self._thread.join(2.0)
        leftovers: list = []
        if self._thread.is_alive():
            self._abandoned = True
            flight = self._in_flight
            if flight is not None and flight[0] == MEMORY:
                leftovers.extend(flight[1])
        leftovers.extend(self.buffer.drain_memory())
        self.keep_leftovers(leftovers)
        self.finish()
        return not stalled


class LoopWriter(Writer):
    """A writer driven by the event loop, for a non-blocking transport (a socket)."""

    def __init__(self, output: OutputPlugin, buffer: Buffer, loop: Any, **kwargs: Any) -> None:
        super().__init__(output, buffer, **kwargs)
        self.loop = loop
        self._watched: int | None = None
        self._timer_due = False
        self._attempt = 0
        buffer.on_ready = self.pump

    def start(self) -> None:
        self.pump()

    def control(self, action: Callable[[], None]) -> None:
        self.buffer.hand_over()
        action()

    def reopen(self) -> None:
        self.buffer.hand_over()
        self.reopen_wanted = True
        self._unwatch()
        self.waiting = None
        self._timer_due = False  # a reconnect now, not at the end of a backoff
        self._attempt += 1
        self.pump()

    def pump(self) -> None:
        """Write while the peer takes items (after each hand-over, timer and readiness)."""
        if self.waiting is not None or self._timer_due:
            return
        while True:
            if not self.up or self.reopen_wanted:
                if not self._open():
                    return
            with self.buffer.cond:
                source, items = self.buffer.take(self.batch_max)
            if not items:
                return
            if not self.write(source, items):
                if self.waiting is not None:
                    self._wait(self.waiting)
                elif not self.up:
                    self._retry_later()
                return

    def _open(self) -> bool:
        try:
            opened = self.try_open()
        except WouldBlock as exc:  # connecting or resolving: the loop says when to go on
            self.waiting = exc
            self._wait(exc)
            return False
        if not opened:
            self._retry_later()
            return False
        self._watch_peer()
        return True

    def _wait(self, wait: WouldBlock) -> None:
        """Go on when the socket is writable; with `retry_after` too, give up after that
        long (a connect that never completes), or without a socket just go on then."""
        attempt = self._attempt
        if wait.fileno is not None:
            self._watched = wait.fileno
            self.loop.add_writer(wait.fileno, self._writable)
            if wait.retry_after is not None:
                self.loop.call_later(wait.retry_after, lambda: self._timed_out(attempt))
        else:
            self.loop.call_later(wait.retry_after or 0.05, lambda: self._resume(attempt))

    def _timed_out(self, attempt: int) -> None:
        if attempt == self._attempt and self.waiting is not None and not self.up:
            self.outage("connect timed out")
            self._retry_later()

    def _writable(self) -> None:
        self._unwatch()
        self.waiting = None
        self.pump()

    def _resume(self, attempt: int) -> None:
        if attempt == self._attempt and self.waiting is not None:
            self.waiting = None
            self.pump()

    def _unwatch(self) -> None:
        if self._watched is not None:
            self.loop.remove_writer(self._watched)
            self._watched = None

    def _retry_later(self) -> None:
        self._timer_due = True
        self._attempt += 1
        attempt = self._attempt

        def due() -> None:
            if attempt == self._attempt:
                self._timer_due = False
                self.pump()

        self.loop.call_later(max(0.0, self.next_attempt - self.now()), due)

    def _watch_peer(self) -> None:
        """A stream peer that closes is noticed at once, not on a later send."""
        fileno = getattr(self.transport, "peer_fileno", lambda: None)()
        if fileno is not None:
            self.loop.add_reader(fileno, self._peer_readable)

    def _peer_readable(self) -> None:
        problem = self.transport.peer_closed()
        if problem:
            self.outage(problem)
            self._retry_later()

    def close(self) -> None:
        fileno = getattr(self.transport, "peer_fileno", lambda: None)()
        if fileno is not None and self.loop is not None:
            self.loop.remove_reader(fileno)
        self._unwatch()
        self.waiting = None
        self._attempt += 1
        super().close()

    def request_stop(self) -> None:
        """Nothing to start: the loop has ended, `stop` drains in the caller."""

    def stop(self) -> bool:
        """At exit: give a connected peer the stop timeout to take what waits."""
        self.buffer.hand_over()
        self._attempt += 1
        deadline = self.now() + self.stop_timeout
        if self.up:
            while (left := deadline - self.now()) > 0:
                with self.buffer.cond:
                    source, items = self.buffer.take(self.batch_max)
                if not items:
                    break
                self.transport.set_timeout(left)  # blocking now, the loop has ended
                if not self.write(source, items):
                    break
        self.close()
        self.keep_leftovers(self.buffer.drain_memory())
        self.finish()
        return True
