"""The guard around every input's handler: one bad datagram never ends the daemon.

An input reads its socket in `on_readable` and hands each datagram (NFCT,
NFLOG) or frame (UNIXSOCK) to its `receive(data)`, looked up on the instance.
`guard_input` replaces that instance attribute with a wrapper that catches any
`Exception`, counts it as `failed` on the input's counters (a loss: the events
of that datagram are gone), logs it rate-limited and returns, so the read loop
goes on with the next datagram.  The daemon guards every input of the
pipeline; a plugin neither catches for itself nor knows it is guarded.

Why here and not in each plugin: a decoder bug the plugin did not foresee is
exactly what its own `except` clauses miss.  Why per datagram and not around
`on_readable`: a guard there would drop the rest of the read batch with the
bad datagram, and skip the input's own end-of-batch work.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ulogpy.core.plugin import InputPlugin

log = logging.getLogger("ulogpy.guard")
#: Failures of one input logged in full (with the traceback) before only summing up.
LOGGED_IN_FULL = 5
#: Seconds between two summary lines once `LOGGED_IN_FULL` failures were logged.
LOG_EVERY = 60.0
#: The attribute that marks a guarded `receive` (guarding twice wraps once).
_GUARDED = "__ulogpy_guarded__"


class FailureLog:
    """Rate-limited log of one input's failures: the first few in full, then at most one
    line every `log_every` seconds saying how many more there were."""

    def __init__(self, name: str, log_every: float = LOG_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.log_every = log_every
        self.clock = clock
        self.logged = 0
        #: Failures since the last line (not logged one by one).
        self.unlogged = 0
        self.last_line = 0.0

    def failed(self, exc: Exception, size: int) -> None:
        """Note one failure on a datagram of `size` bytes."""
        if self.logged < LOGGED_IN_FULL:
            self.logged += 1
            more = "" if self.logged < LOGGED_IN_FULL else \
                f"; further failures are counted, summed up every {self.log_every:g} s"
            log.error("%s: a datagram of %d bytes failed, skipped (counted as 'failed')%s: "
                      "%r", self.name, size, more, exc, exc_info=exc)
            self.last_line = self.clock()
            return
        self.unlogged += 1
        now = self.clock()
        if now - self.last_line >= self.log_every:
            log.error("%s: %d more datagrams failed and were skipped in the last %.0f s "
                      "(last: %r)", self.name, self.unlogged, now - self.last_line, exc)
            self.unlogged = 0
            self.last_line = now


def guard_input(inp: InputPlugin, log_every: float = LOG_EVERY) -> bool:
    """Wrap `inp.receive` so that no exception escapes it; False if `inp` has none.

    Guarding an input twice keeps one wrapper.  Inputs without a `receive` (a
    test stand-in, a third-party input reading otherwise) are left as they are;
    the loop's own last-resort guard still covers them.
    """
    handler = getattr(inp, "receive", None)
    if handler is None or not callable(handler):
        return False
    if getattr(handler, _GUARDED, False):
        return True
    counters = inp.counters
    failures = FailureLog(str(inp), log_every)

    def receive(data: bytes) -> None:
        try:
            handler(data)
        except Exception as exc:
            counters.add("failed")
            failures.failed(exc, len(data) if isinstance(data, (bytes, bytearray)) else -1)

    setattr(receive, _GUARDED, True)
    receive.__doc__ = handler.__doc__
    inp.receive = receive  # type: ignore[method-assign]
    return True
