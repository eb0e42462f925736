"""The event loop: socket readiness, timers and signals in one thread.

Signals are turned into loop events through `signal.set_wakeup_fd`, so they
are handled between events, never inside one (as ulogd does with its
self-pipe).  After every round of ready sockets the loop calls
`after_batch` (the runner hands the batch to the output writers there).

No exception ends the loop: the runner guards each input's handler per
datagram (`ulogpy.daemon.guard`), and the loop guards every callback (a
reader, a writer, a timer, a signal handler) as a last resort, counting
`failed` on the plugin the callback belongs to and logging the first few.  A socket may have a
reader and a writer callback at once (an output waiting for its peer to
accept more data still watches for the peer closing).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import selectors
import signal
import socket
import time
from collections.abc import Callable

log = logging.getLogger("ulogpy.loop")
#: Callback failures logged in full (with the traceback) before only counting.
LOGGED_FAILURES = 5


def _owner_counters(callback: Callable) -> object | None:
    """The counters of the plugin a bound-method callback belongs to, if any."""
    owner = getattr(callback, "__self__", None)
    return getattr(owner, "counters", None)


class Loop:
    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._signal_handlers: dict[int, Callable[[int], None]] = {}
        self._pending_signals: list[int] = []
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self.running = False
        self.after_batch: Callable[[], None] = lambda: None
        self.failures = 0

    # -- sockets -------------------------------------------------------------
    def add_reader(self, sock, callback: Callable[[], None]) -> None:
        self._watch(sock, 0, callback)

    def remove_reader(self, sock) -> None:
        self._watch(sock, 0, None)

    def add_writer(self, sock, callback: Callable[[], None]) -> None:
        """Call `callback` whenever `sock` can take more data (or its connect finished)."""
        self._watch(sock, 1, callback)

    def remove_writer(self, sock) -> None:
        self._watch(sock, 1, None)

    def _watch(self, sock, slot: int, callback: Callable[[], None] | None) -> None:
        """Set the reader (slot 0) or writer (slot 1) callback of `sock`; None removes it."""
        try:
            key = self._selector.get_key(sock)
        except (KeyError, ValueError):
            key = None
        callbacks = list(key.data) if key is not None else [None, None]
        callbacks[slot] = callback
        mask = (selectors.EVENT_READ if callbacks[0] else 0) | \
            (selectors.EVENT_WRITE if callbacks[1] else 0)
        if key is None:
            if mask:
                self._selector.register(sock, mask, tuple(callbacks))
        elif mask:
            self._selector.modify(sock, mask, tuple(callbacks))
        else:
            self._selector.unregister(sock)

    # -- timers --------------------------------------------------------------
    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._seq), callback))

    def call_every(self, interval: float, callback: Callable[[], None]) -> None:
        def tick() -> None:
            self.call_later(interval, tick)
            callback()

        self.call_later(interval, tick)

    # -- signals -------------------------------------------------------------
    def add_signal_handler(self, signum: int, handler: Callable[[int], None]) -> None:
        self._signal_handlers[signum] = handler
        signal.signal(signum, self._on_signal)
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)

    def has_pending_signals(self) -> bool:
        """A signal arrived and waits for the loop (code that waits should give way)."""
        return bool(self._pending_signals)

    def _on_signal(self, signum: int, frame) -> None:
        self._pending_signals.append(signum)

    def _dispatch_signals(self) -> None:
        try:
            while self._wake_r.recv(512):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        pending, self._pending_signals = self._pending_signals, []
        for signum in pending:
            self._guarded(self._signal_handlers[signum], signum)

    # -- running -------------------------------------------------------------
    def stop(self) -> None:
        self.running = False

    def run(self) -> None:
        self.running = True
        select = self._selector.select
        while self.running:
            timeout = None
            if self._timers:
                timeout = max(0.0, self._timers[0][0] - time.monotonic())
            events = select(timeout)
            for key, mask in events:
                if key.data is None:
                    self._dispatch_signals()
                    continue
                reader, writer = key.data
                if mask & selectors.EVENT_READ and reader is not None:
                    self._guarded(reader)
                    if writer is not None:  # the reader may have dropped the socket or writer
                        current = self._selector.get_map().get(key.fd)
                        writer = current.data[1] if current is not None else None
                if mask & selectors.EVENT_WRITE and writer is not None:
                    self._guarded(writer)
            if self._pending_signals:
                self._dispatch_signals()
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                _, _, callback = heapq.heappop(self._timers)
                self._guarded(callback)
            self._guarded(self.after_batch)

    def _guarded(self, callback: Callable, *args: object) -> None:
        """Run one callback; an exception is counted and logged, never raised."""
        try:
            callback(*args)
        except Exception as exc:
            self.failures += 1
            counters = _owner_counters(callback)
            if counters is not None:
                counters.add("failed")  # type: ignore[attr-defined]
            if self.failures <= LOGGED_FAILURES:
                log.error("%r failed in the main loop, skipped: %r", callback, exc,
                          exc_info=exc)

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        self._selector.close()
        for s in (self._wake_r, self._wake_w):
            s.close()

