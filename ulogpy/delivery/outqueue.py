"""A bounded queue and a writer thread in front of one output.

ulogd writes from its only thread, so a stalled disk or a slow peer stops
every input and the kernel drops events for all stacks.  Here the reader
only appends records to the output's queue; a thread per output writes
them.  When the queue is full the output's policy decides, and every record
that does not reach the output is counted:

* `block`: the reader waits for room (back-pressure: nothing dropped here,
  the kernel may drop instead, and the input counts that);
* `drop-oldest`: the oldest queued records make room (as Telegraf's output
  buffers do);
* `spool`: the overflow goes to a file on disk and is written, in order,
  once the output catches up.

The reader hands records over once per batch (one lock per batch, not per
record).  Everything that touches the output itself (writes, flushes,
SIGHUP's reopen) runs in its thread, so plugins need no locking.  A file
output's records arrive already rendered (`renders_text`): the queue holds
its lines, and the thread writes each batch of them in one call.

Waking the thread costs more than writing a few records (a futex, two context
switches, the GIL changing hands), and under load every read batch holds only
a few.  An output that keeps lines back anyway (a file without `sync` writes
every `LAZY_LINES` lines, or at the runner's one-second tick) says so with
`lazy_lines` on its sink: its thread is woken once that many records wait, or
when it was last woken `WAKE_INTERVAL` ago (so a quiet daemon still hands each
event on at once and its counters stay current), or for a control (the tick, a
signal, the stop).  What reaches the file, and when, does not change.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable

from ulogpy.core.plugin import Option, OutputPlugin
from ulogpy.delivery.spool import Spool, decode_record, decode_text, encode_record, encode_text

log = logging.getLogger("ulogpy.outqueue")

POLICIES = ("block", "drop-oldest", "spool")
#: Bound of one output's spool on disk; beyond it records are dropped (counted).
SPOOL_MAX_BYTES = 1 << 30
#: Records read back from the spool per round.
SPOOL_BATCH = 1000
#: How many failures of one output are logged in full before only counting.
LOGGED_FAILURES = 5
#: Seconds after which a hand-over wakes the thread however few records wait.
WAKE_INTERVAL = 0.05


def _check_size(value: int) -> str | None:
    return None if value > 0 else "a positive number of records"


#: The options every queued output accepts (ulogpy's own; `-i` marks them).
QUEUE_OPTIONS = (
    Option("queue_size", int, 100_000, help="records kept in memory for this output",
           check=_check_size, ulogd=False),
    Option("queue_policy", str, "drop-oldest", choices=POLICIES, ulogd=False,
           help="when the queue is full: block the reader, drop the oldest, spool to disk"),
    Option("spool_dir", str, "/var/lib/ulogpy/spool", ulogd=False,
           help="directory of the on-disk spool (queue_policy=spool)"),
)


def _lazy_lines(output: OutputPlugin) -> int:
    """How many lines the output's sink keeps back before writing (1: none)."""
    return getattr(getattr(output, "sink", None), "lazy_lines", 1)


class OutputQueue:
    """The queue and writer thread of one output instance."""

    def __init__(self, output: OutputPlugin, size: int, policy: str, spool_dir: str) -> None:
        self.output = output
        self.size = size
        self.policy = policy
        self.counters = output.counters
        #: Records of the current batch (reader thread only): `put` is its append.
        self.pending: list[dict] = []
        self.put: Callable[[dict], None] = self.pending.append
        self._queue: deque[list[dict]] = deque()
        self._queued = 0
        self._controls: deque[Callable[[], None]] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._spool: Spool | None = None
        if policy == "spool":
            encode, decode = (encode_text, decode_text) if output.renders_text else \
                (functools.partial(encode_record, keys=None), decode_record)
            self._spool = Spool(os.path.join(spool_dir, output.id), SPOOL_MAX_BYTES, encode,
                                decode=decode)
            left = self._spool.open()
            if left:
                log.log(25, "%s: %d spooled records from the last run will be written first",
                        output, left)
        #: Records queued before the thread is woken (see the module docstring).
        self.wake_at = max(1, min(_lazy_lines(output), size // 4))
        self._woken = 0.0
        self._thread = threading.Thread(target=self._run, name=f"output {output}", daemon=True)
        #: Set by the runner: True when a signal waits, so a blocked reader gives up waiting.
        self.interrupted: Callable[[], bool] = lambda: False

    def start(self) -> None:
        self._thread.start()

    # -- reader side -------------------------------------------------------
    def hand_over(self) -> None:
        """Move the batch collected by `put` into the queue (after each read batch)."""
        if not self.pending:
            return
        batch = self.pending[:]
        self.pending.clear()
        with self._cond:
            if self._spooling():
                self._to_spool(batch)  # keep the order: nothing overtakes the spool
            elif self._queued + len(batch) > self.size:
                self._overflow(batch)
            else:
                self._enqueue(batch)
            now = time.monotonic()
            if self._queued >= self.wake_at or now - self._woken >= WAKE_INTERVAL or \
                    self._spool is not None:
                self._woken = now
                self._cond.notify()

    def _enqueue(self, batch: list[dict]) -> None:
        self._queue.append(batch)
        self._queued += len(batch)

    def _overflow(self, batch: list[dict]) -> None:
        self._cond.notify()  # the queue is full: the thread must be writing
        if self.policy == "block":
            started = time.monotonic()
            while self._queued + len(batch) > self.size and self._queued and \
                    self._thread.is_alive() and not self.interrupted():
                self._cond.wait(0.2)
            self.counters.add("blocked_ms", int((time.monotonic() - started) * 1000))
            if self._queued + len(batch) > self.size and self._queued:
                self._drop_oldest(batch)  # a signal (SIGTERM...) must not wait for the output
            else:
                self._enqueue(batch)
        elif self.policy == "spool":
            self._to_spool(batch)
        else:
            self._drop_oldest(batch)

    def _drop_oldest(self, batch: list[dict]) -> None:
        self._enqueue(batch)
        dropped = 0
        while self._queued > self.size:
            oldest = self._queue[0]
            excess = self._queued - self.size
            if len(oldest) <= excess:
                self._queue.popleft()
                cut = len(oldest)
            else:
                del oldest[:excess]
                cut = excess
            self._queued -= cut
            dropped += cut
        self._note_drop(dropped, "queue full")

    def _spooling(self) -> bool:
        return self._spool is not None and self._spool.rows_on_disk > 0

    def _to_spool(self, batch: list[dict]) -> None:
        assert self._spool is not None
        done = 0
        try:
            for record in batch:
                self._spool.append(record)
                done += 1
            self._spool.flush()
        except (OSError, ValueError, TypeError) as exc:
            self._note_drop(len(batch) - done, f"spool failed: {exc}")
        self.counters.add("spooled", done)

    def _note_drop(self, count: int, why: str) -> None:
        if not count:
            return
        before = self.counters.get("dropped")
        self.counters.add("dropped", count)
        if before == 0:
            log.error("%s: output too slow, dropping records (%s); counted as 'dropped'",
                      self.output, why)

    def control(self, action: Callable[[], None]) -> None:
        """Run `action` in the output's thread, in order with the records before it."""
        self.hand_over()
        with self._cond:
            self._controls.append(action)
            self._cond.notify()

    def depth(self) -> int:
        return self._queued + len(self.pending) + (self._spool.rows_on_disk if self._spool else 0)

    # -- output side -------------------------------------------------------
    def _run(self) -> None:
        write_batch = self._write_lines if self.output.renders_text else self._write_records
        counters = self.counters
        while True:
            with self._cond:
                while not (self._queue or self._controls or self._stopping or
                           self._spooling()):
                    self._cond.wait()
                batches = list(self._queue)
                self._queue.clear()
                self._queued = 0
                controls = list(self._controls)
                self._controls.clear()
                stopping = self._stopping
                self._cond.notify_all()  # room for a blocked reader
            from_spool = not batches and self._spooling()
            if from_spool:
                batches = [self._spool.read(SPOOL_BATCH)]  # type: ignore[union-attr]
            for batch in batches:
                counters.add("written", write_batch(batch))
                self._safely(self.output.flush)
            if from_spool:
                self._spool.commit(len(batches[0]))  # type: ignore[union-attr]
                counters.add("replayed", len(batches[0]))
            for action in controls:
                self._safely(action)
            with self._cond:
                idle = not (self._queue or self._controls or self._spooling())
                self._cond.notify_all()
            if stopping and idle:
                return

    def _write_records(self, batch: list[dict]) -> int:
        """Each record to the output's `write`; returns how many it took."""
        write = self.output.write
        written = 0
        for record in batch:
            try:
                write(record)
                written += 1
            except Exception as exc:
                self._failed(1, exc)
        return written

    def _write_lines(self, batch: list[str]) -> int:
        """Lines the runner rendered, to the output in one call."""
        try:
            self.output.write_lines(batch)
        except Exception as exc:
            self._failed(len(batch), exc)
            return 0
        return len(batch)

    def _failed(self, count: int, exc: Exception) -> None:
        self.counters.add("failed", count)
        if self.counters.get("failed") <= LOGGED_FAILURES:
            log.error("%s failed on an event: %r", self.output, exc)

    def _safely(self, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as exc:
            self.counters.add("flush_failed")
            if self.counters.get("flush_failed") <= LOGGED_FAILURES:
                log.error("%s: %s failed: %s", self.output, getattr(action, "__name__", action),
                          exc)

    def request_stop(self) -> None:
        """Ask the thread to write what is queued (and spooled), flush, and end."""
        self.hand_over()
        with self._cond:
            self._controls.append(functools.partial(self.output.flush, True))
            self._stopping = True
            self._cond.notify()

    def join(self, timeout: float) -> bool:
        """Wait for the thread to end; False if the output stalled (what is left is counted
        as dropped, or kept in the spool for the next run)."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            with self._cond:
                left = [r for batch in self._queue for r in batch]
                self._queue.clear()
                self._queued = 0
            kept = 0
            if self._spool is not None and left:
                try:
                    self._spool.prepend(left)  # older than what overflowed to disk
                    kept, left = len(left), []
                except OSError as exc:
                    log.error("%s: cannot keep the queue in the spool: %s", self.output, exc)
            self._note_drop(len(left), "stalled at exit")
            log.error("%s: output stalled at exit; %d records dropped, %d kept in the spool",
                      self.output, len(left), kept)
            return False
        if self._spool is not None:
            self._spool.close()
        return True
