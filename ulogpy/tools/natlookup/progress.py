"""A progress bar on stderr for long JSON scans, only when a person is watching."""

from __future__ import annotations

import sys
import time
from typing import TextIO

#: Below this many bytes a scan takes a second or two: no bar.
MIN_BYTES = 64 << 20


class Progress:
    """`update(done)` redraws at most 10 times a second; `close()` clears the line."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None,
                 force: bool | None = None):
        self.stream = stream or sys.stderr
        shown = force if force is not None else (
            total >= MIN_BYTES and self.stream.isatty())
        self.total = max(total, 1)
        self.label = label
        self.enabled = bool(shown)
        self.start = time.monotonic()
        self.last = 0.0

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last < 0.1:
            return
        self.last = now
        frac = min(done / self.total, 1.0)
        width = 30
        bar = "#" * int(frac * width)
        rate = done / max(now - self.start, 1e-6) / (1 << 20)
        self.stream.write(f"\r{self.label} [{bar:<{width}}] {frac:6.1%} {rate:6.1f} MiB/s")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
