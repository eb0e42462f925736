"""The items waiting for one output: memory, then (queue_policy=spool) the disk.

The reader appends each item to `pending` (a list append, nothing else) and
hands the read batch over once (`hand_over`: one lock per batch, not per
item).  When memory is full the policy decides, and nothing is lost silently:

* `block`: the reader waits for room (back-pressure: the kernel may drop
  instead, and the input counts that); a signal waiting for the loop ends the
  wait, the overflow is then dropped and counted;
* `drop-oldest`: the oldest items make room, counted as `dropped`;
* `spool`: the overflow goes to the on-disk spool (`ulogpy.delivery.spool`),
  and so does everything after it until the writer has caught up: memory
  holds the oldest items, then the spool, so order is never broken.  A spool
  left by an earlier run is replayed first.

The writer takes the oldest items (`take`), then says how many reached the
destination (`done`) or gives the rest back to the head (`give_back`), so an
outage never reorders or loses what waits.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from ulogpy.core.plugin import Counters
from ulogpy.delivery.spool import Spool

log = logging.getLogger("ulogpy.delivery")

MEMORY = "memory"
SPOOL = "spool"


class Buffer:
    """The queue of one output instance; thread-safe between one reader and one writer."""

    def __init__(self, size: int, policy: str, spool: Spool | None, counters: Counters,
                 label: str) -> None:
        self.size = max(1, size)
        self.policy = policy
        self.spool = spool
        self.counters = counters
        self.label = label
        #: Items of the current read batch (reader thread only): `put` is its append.
        self.pending: list = []
        self.put: Callable[[object], None] = self.pending.append
        self._batches: deque[list] = deque()
        self.count = 0
        #: Items ever taken from memory and not given back: a position in the stream of
        #: items, so that a control can run right after the items handed over before it.
        self.consumed = 0
        self.cond = threading.Condition()
        #: When the oldest item in memory arrived (monotonic), None while memory is empty.
        self.since: float | None = None
        self.spilling = bool(spool is not None and spool.rows_on_disk)
        #: Items in memory that make the writer start before its batching delay is over.
        self.wake_at = 1
        #: Called after a hand-over that left items waiting (a loop writer starts there).
        self.on_ready: Callable[[], None] | None = None
        #: True while a signal waits for the loop: a blocked reader then gives up waiting.
        self.interrupted: Callable[[], bool] = lambda: False
        #: False once the writer is gone: a blocked reader must not wait for it.
        self.writer_alive: Callable[[], bool] = lambda: True
        #: The first item in memory went out in part (see `give_back`).
        self._keep_head = False
        #: Items dropped in the current episode (0: not dropping).
        self._dropping = 0

    # -- reader side ---------------------------------------------------------------
    def hand_over(self) -> None:
        """Move the batch collected by `put` into the buffer (after each read batch)."""
        if not self.pending:
            return
        batch = self.pending[:]
        self.pending.clear()
        # While spilling, the batch is encoded before the lock is taken (the writer,
        # reading the spool under it, must not wait for that); `spilling` is read again
        # under the lock, and if the writer caught up meanwhile the lines are not used.
        encoded = self.spool.encode_all(batch) if self.spilling and self.spool else None
        with self.cond:
            was_empty = not self.count
            if self.spilling:
                self._to_spool(batch, encoded)  # nothing overtakes the spool
            elif self.count + len(batch) > self.size:
                self._overflow(batch)
            else:
                self._enqueue(batch)
            if was_empty or self.count >= self.wake_at or self.spilling:
                self.cond.notify()
        if self.on_ready is not None:
            self.on_ready()

    def _enqueue(self, batch: list) -> None:
        if not self.count:
            self.since = time.monotonic()
        self._batches.append(batch)
        self.count += len(batch)

    def _overflow(self, batch: list) -> None:
        if self.policy == "spool" and self.spool is not None:
            room = self.size - self.count  # the head fills memory, the rest goes to disk
            if room > 0:
                self._enqueue(batch[:room])
                batch = batch[room:]
            self.spilling = True
            log.warning("%s: memory queue full (%d), spooling to %s", self.label, self.size,
                        self.spool.dir)
            self._to_spool(batch)
            return
        if self.policy == "block":
            self.cond.notify()  # the writer must be writing
            started = time.monotonic()
            while self.count + len(batch) > self.size and self.count and \
                    self.writer_alive() and not self.interrupted():
                self.cond.wait(0.2)
            self.counters.add("blocked_ms", int((time.monotonic() - started) * 1000))
        self._enqueue(batch)
        self._drop_oldest()

    def _drop_oldest(self) -> None:
        head = None
        if self._keep_head:  # half sent: it stays first, the next oldest go instead
            head = self._batches[0].pop(0)
            if not self._batches[0]:
                self._batches.popleft()
            self.count -= 1
        dropped = 0
        limit = max(0, self.size - (head is not None))
        while self.count > limit:
            oldest = self._batches[0]
            excess = self.count - limit
            if len(oldest) <= excess:
                self._batches.popleft()
                cut = len(oldest)
            else:
                del oldest[:excess]
                cut = excess
            self.count -= cut
            dropped += cut
        if head is not None:
            self._batches.appendleft([head])
            self.count += 1
        self.drop(dropped, "queue full")

    def _to_spool(self, batch: list,
                  encoded: tuple[list[bytes], Exception | None] | None = None) -> None:
        """Append `batch` to the spool (`encoded`: its lines, if made already); what
        cannot be encoded or written, from the first such item on, is dropped, counted."""
        assert self.spool is not None
        lines, failure = encoded or self.spool.encode_all(batch)
        done = len(lines)
        try:
            self.spool.append_lines(lines)
        except OSError as exc:
            done = getattr(exc, "written", 0)
            failure = exc
        with contextlib.suppress(OSError):  # what stays in the file's buffer goes later
            self.spool.flush()
        if failure is not None:
            self.drop(len(batch) - done, f"spool failed: {failure}")
        self.counters.add("spooled", done)

    def drop(self, count: int, why: str) -> None:
        """Count `count` items lost (logged once per episode)."""
        if not count:
            return
        self.counters.add("dropped", count)
        if not self._dropping:
            log.error("%s: output too slow, dropping records (%s); counted as 'dropped'",
                      self.label, why)
        self._dropping += count

    # -- writer side -----------------------------------------------------------------
    def ready(self, delay: float, now: float) -> bool:
        """Items are due: enough of them, or the oldest waited `delay`, or the spool."""
        if self.count:
            return self.count >= self.wake_at or now - (self.since or now) >= delay
        return self.spilling

    def take(self, max_items: int) -> tuple[str, list]:
        """The oldest items, from memory or else the spool's lines (call with `cond`
        held; `rows` makes them ready to write)."""
        if self.count:
            items: list = []
            while self._batches and len(items) < max_items:
                batch = self._batches[0]
                room = max_items - len(items)
                if len(batch) <= room:
                    items.extend(self._batches.popleft())
                else:
                    items.extend(batch[:room])
                    del batch[:room]
            self.count -= len(items)
            self.consumed += len(items)
            self._keep_head = False
            self.since = time.monotonic() if self.count else None
            return MEMORY, items
        if not self.spilling or self.spool is None:
            return MEMORY, []
        if not self.spool.has_unread():
            self.spool.clear()  # caught up: new items go to memory again
            self.spilling = False
            log.info("%s: spool drained", self.label)
            return MEMORY, []
        return SPOOL, self.spool.read_lines(max_items)  # decoded by `rows`, unlocked

    def rows(self, source: str, items: list) -> list:
        """The items of a `take`, ready to write: the spool's lines decoded (call without
        `cond` held: decoding a batch takes a while, and the reader's hand-over must not
        wait for it)."""
        if source == SPOOL and self.spool is not None:
            return self.spool.decode_lines(items)
        return items

    def done(self, source: str, count: int) -> None:
        """The first `count` items of the last `take` are handled."""
        if source == SPOOL and self.spool is not None and count:
            self.spool.commit(count)
            self.counters.add("replayed", count)

    def caught_up(self) -> None:
        """A whole batch went out: a drop episode ends once memory is half empty."""
        if self._dropping:
            with self.cond:
                if self._dropping and self.count < self.size // 2:
                    log.log(25, "%s: the destination takes records again; %d were dropped",
                            self.label, self._dropping)
                    self._dropping = 0

    def give_back(self, source: str, items: list, keep_head: bool = False) -> None:
        """Items that could not be written go back to the head, in order; with
        `keep_head` the first went out in part and is never dropped for room."""
        if source == SPOOL:
            if self.spool is not None:
                self.spool.rewind()
            return
        if items:
            with self.cond:
                self._batches.appendleft(list(items))
                self._keep_head = keep_head
                if not self.count:
                    self.since = time.monotonic()
                self.count += len(items)
                self.consumed -= len(items)

    def depth(self) -> int:
        """Items waiting, in memory and on disk."""
        on_disk = self.spool.rows_on_disk if self.spool is not None else 0
        return self.count + len(self.pending) + on_disk

    def drain_memory(self) -> list:
        """Everything in memory, oldest first, removed (at exit)."""
        with self.cond:
            items = [item for batch in self._batches for item in batch]
            self._batches.clear()
            self._keep_head = False
            self.count = 0
            self.since = None
        return items
