"""Buffered append-only text files for the file outputs (LOGEMU, JSON, ...).

Lines are collected in memory and written with one `write()` per block of
whole lines (`WRITE_LINES`) on an O_APPEND descriptor, so two writers of one
file never split each other's lines.  With `sync` (ulogd: flush after every
line) each batch of events reaches the kernel before the next read; without
it lines wait until `LAZY_LINES` are pending or the runner's one-second
tick.  Write errors (disk full, I/O error) are counted and reported, never
silent; the lines not yet written are kept and retried on the next flush, up
to a bound.
"""

from __future__ import annotations

import logging
import os

from ulogpy.core.plugin import Counters

log = logging.getLogger("ulogpy.filesink")
#: Lines kept for retry while the file cannot be written; beyond that they are dropped (counted).
MAX_PENDING_LINES = 100_000
LAZY_LINES = 256
#: Lines joined into one `write()`.  Why not all of them: the joined text and its
#: encoding would pass glibc's mmap and trim thresholds (128 KiB) with long lines, and
#: then every flush pays an mmap or a brk and page faults for them (measured: 190 µs
#: for 256 JSON lines at once, 14 µs in blocks of 64).
WRITE_LINES = 64


class FileSink:
    def __init__(
        self, path: str, sync: bool, counters: Counters, owner: str,
        reopen_notice: str | None = None,
    ) -> None:
        self.path = os.path.abspath(path)
        self.sync = sync
        self.counters = counters
        self.owner = owner
        #: The NOTICE logged on SIGHUP (ulogd's wording for the plugin), if not the generic one.
        self.reopen_notice = reopen_notice
        self.pending: list[str] = []
        #: Queue one line (ends with "\n"), or a list of them; they reach the file at the
        #: next flush.
        self.write_line = self.pending.append
        self.write_lines = self.pending.extend
        self.fd: int | None = None

    @property
    def lazy_lines(self) -> int:
        """Lines kept in memory before a write (outside the tick): 1 with `sync`."""
        return 1 if self.sync else LAZY_LINES

    def open(self) -> None:
        """Open for appending (creating missing directories); raises OSError with the reason."""
        os.makedirs(os.path.dirname(self.path), mode=0o755, exist_ok=True)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def reopen(self) -> None:
        """SIGHUP (logrotate): switch to a fresh file of the same name; keep the old on failure."""
        self.flush(force=True)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            log.error("%s: can't reopen %s: %s", self.owner, self.path, exc.strerror)
            return
        if self.reopen_notice:
            log.log(25, "%s", self.reopen_notice)
        else:
            log.log(25, "%s: reopening %s", self.owner, self.path)
        if self.fd is not None:
            os.close(self.fd)
        self.fd = fd

    def flush(self, force: bool = False) -> None:
        if not self.pending or self.fd is None:
            return
        if not (self.sync or force) and len(self.pending) < LAZY_LINES:
            return
        pending = self.pending
        start = 0
        try:
            for start in range(0, len(pending), WRITE_LINES):
                data = "".join(pending[start:start + WRITE_LINES]).encode(
                    "utf-8", "surrogateescape")
                written = os.write(self.fd, data)
                while written < len(data):
                    written += os.write(self.fd, data[written:])
        except OSError as exc:
            del pending[:start]  # the lines before the failed write are in the file
            self.counters.add("write_errors")
            if self.counters.get("write_errors") in (1, 10, 100, 1000):
                log.error("%s: cannot write %s: %s (%d lines pending)", self.owner, self.path,
                          exc.strerror, len(self.pending))
            if len(self.pending) > MAX_PENDING_LINES:
                dropped = len(self.pending) - MAX_PENDING_LINES
                del self.pending[:dropped]
                self.counters.add("dropped", dropped)
            return
        self.pending.clear()

    def close(self) -> None:
        self.flush(force=True)
        if self.pending:
            self.counters.add("dropped", len(self.pending))
            log.error("%s: %d lines could not be written to %s", self.owner,
                      len(self.pending), self.path)
            self.pending.clear()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
