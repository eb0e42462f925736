"""Append-only text files: the transport, and the base of the outputs that use it.

LOGEMU, JSON (file mode), GPRINT and OPRINT differ only in how they render a
record (`render`, which the runner calls in the reader's thread).  Opening
the file with ulogd's error wording, batching (`sync`), SIGHUP's reopen for
logrotate, retries after a write error and the counters belong to the
delivery model; what is left here is the file itself.

Lines are written with one `write()` per block of whole lines (`WRITE_LINES`)
on an O_APPEND descriptor, so two writers of one file never split each other's
lines.  A failed write (disk full, I/O error) raises `Unavailable`: the lines
not yet written stay queued, in order, and are retried with backoff.
"""

from __future__ import annotations

import os

from ulogpy.core.plugin import OutputPlugin, Unavailable

#: Lines kept back by an output without `sync` before they are written (or 1 s).
LAZY_LINES = 256
LAZY_SECONDS = 1.0
#: Lines joined into one `write()`.  Why not all of them: the joined text and its
#: encoding would pass glibc's mmap and trim thresholds (128 KiB) with long lines, and
#: then every write pays an mmap or a brk and page faults for them (measured: 190 µs
#: for 256 JSON lines at once, 14 µs in blocks of 64).
WRITE_LINES = 64


class FileSink:
    """One append-only file; all calls come from the output's writer thread."""

    nonblocking = False

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.target = self.path
        self.fd: int | None = None

    def open(self) -> None:
        """Open for appending, creating missing directories."""
        try:
            os.makedirs(os.path.dirname(self.path), mode=0o755, exist_ok=True)
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                              0o640)
        except OSError as exc:
            raise Unavailable(f"{self.path}: {exc.strerror}") from None

    def write(self, lines: list[str]) -> int:
        fd = self.fd
        assert fd is not None
        done = 0
        try:
            for start in range(0, len(lines), WRITE_LINES):
                block = lines[start:start + WRITE_LINES]
                data = "".join(block).encode("utf-8", "surrogateescape")
                written = os.write(fd, data)
                while written < len(data):
                    written += os.write(fd, data[written:])
                done += len(block)
        except OSError as exc:
            raise Unavailable(f"cannot write {self.path}: {exc.strerror}", written=done) \
                from None
        return done

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class FileOutput(OutputPlugin):
    """An output that appends the lines it renders to the file of its `file` option."""

    renders_text = True
    #: ulogd's words when the file cannot be opened at start, followed by the path and
    #: the reason; start-up fails then, as in ulogd.
    open_error: str | None = "can't open"

    def configure(self) -> None:
        self.transport = FileSink(self.config.file)

    def batching(self) -> tuple[int, float]:
        """`sync`: every read batch reaches the file at once; else lines wait for a block
        of `LAZY_LINES` or a second, as ulogd's stdio buffer makes them wait."""
        if self.config.sync:
            return LAZY_LINES, 0.0
        return LAZY_LINES, LAZY_SECONDS
