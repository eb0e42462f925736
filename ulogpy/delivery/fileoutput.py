"""The common part of the outputs that append lines to a file.

LOGEMU, JSON, GPRINT and OPRINT differ only in how they render a record
(`render`, which the runner calls in the reader's thread); opening the file
(with ulogd's error wording), flushing, SIGHUP's reopen for logrotate and
closing are the same, and live here.  They all write from the output's own
thread (`queued`), so a stalled disk never stops a reader.
"""

from __future__ import annotations

import signal
from typing import ClassVar

from ulogpy.core.plugin import OutputPlugin, PluginError
from ulogpy.transports.filesink import FileSink


class FileOutput(OutputPlugin):
    queued = True
    renders_text = True
    #: ulogd's words when the file cannot be opened, followed by the path and the reason.
    open_error: ClassVar[str] = "can't open"
    #: ulogd's NOTICE on SIGHUP (None: a generic one naming the instance and file).
    reopen_notice: ClassVar[str | None] = None

    def open_sink(self) -> FileSink:
        """Create the sink from the `file` and `sync` options (call from `configure`)."""
        cfg = self.config
        self.sink = FileSink(cfg.file, bool(cfg.sync), self.counters, str(self),
                             reopen_notice=self.reopen_notice)
        return self.sink

    def write(self, record: dict) -> None:
        self.sink.write_line(self.render(record))

    def write_lines(self, lines: list[str]) -> None:
        self.sink.write_lines(lines)

    def start(self, loop) -> None:
        try:
            self.sink.open()
        except OSError as exc:
            raise PluginError(f"{self.open_error} {self.sink.path}: {exc.strerror}") from None

    def flush(self, force: bool = False) -> None:
        self.sink.flush(force)

    def signal(self, signum: int) -> None:
        if signum == signal.SIGHUP:
            self.sink.reopen()

    def stop(self) -> None:
        self.sink.close()
