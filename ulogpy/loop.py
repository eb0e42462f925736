"""The event loop: socket readiness, timers and signals in one thread.

Signals are turned into loop events through `signal.set_wakeup_fd`, so they
are handled between events, never inside one (as ulogd does with its
self-pipe).  After every round of readable sockets the loop calls
`after_batch` (the runner flushes outputs there).
"""

from __future__ import annotations

import heapq
import itertools
import selectors
import signal
import socket
import time
from collections.abc import Callable


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

    # -- sockets -------------------------------------------------------------
    def add_reader(self, sock, callback: Callable[[], None]) -> None:
        self._selector.register(sock, selectors.EVENT_READ, callback)

    def remove_reader(self, sock) -> None:
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError):
            pass

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
            self._signal_handlers[signum](signum)

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
            for key, _mask in events:
                if key.data is None:
                    self._dispatch_signals()
                else:
                    key.data()
            if self._pending_signals:
                self._dispatch_signals()
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                _, _, callback = heapq.heappop(self._timers)
                callback()
            self.after_batch()

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        self._selector.close()
        for s in (self._wake_r, self._wake_w):
            s.close()

