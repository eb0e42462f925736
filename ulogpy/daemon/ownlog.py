"""ulogpy's own log: ulogd's line shape and levels, on Python's logging.

Lines look like ulogd's: `<ctime> <L> <module>:<line> <text>`, where L is
ulogd's numeric level (1 debug, 3 info, 5 notice, 7 error, 8 fatal).
`logfile` takes `stdout`, `syslog` or a path; a path is reopened on SIGHUP
so logrotate works.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import time

NOTICE = 25
logging.addLevelName(NOTICE, "NOTICE")
#: ulogd level -> Python level, and back for the `<L>` field.
FROM_ULOGD = {1: logging.DEBUG, 3: logging.INFO, 5: NOTICE, 7: logging.ERROR, 8: logging.CRITICAL}
TO_ULOGD = {
    logging.DEBUG: 1, logging.INFO: 3, NOTICE: 5, logging.WARNING: 5,
    logging.ERROR: 7, logging.CRITICAL: 8,
}


def python_level(ulogd_level: int) -> int:
    """The Python threshold for a ulogd `loglevel` (levels between round up)."""
    for ul in sorted(FROM_ULOGD):
        if ulogd_level <= ul:
            return FROM_ULOGD[ul]
    return logging.CRITICAL


class UlogdFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = TO_ULOGD.get(record.levelno, 5)
        stamp = time.ctime(record.created)
        text = record.getMessage()
        if record.exc_info:
            text += " " + self.formatException(record.exc_info).replace("\n", " | ")
        return f"{stamp} <{level}> {record.module}:{record.lineno} {text}"


class ReopenableFileHandler(logging.FileHandler):
    """A file handler that reopens its file on demand (SIGHUP)."""

    def reopen(self) -> None:
        self.acquire()
        try:
            old = self.stream
            try:
                self.stream = self._open()
            except OSError as exc:  # keep logging to the old handle (ulogd bug C10 fixed)
                self.stream = old
                sys.stderr.write(f"ulogpy: cannot reopen log file {self.baseFilename}: {exc}\n")
                return
            if old is not None:
                old.close()
        finally:
            self.release()


ROOT = logging.getLogger("ulogpy")


def setup_logging(logfile: str | None, level: int, verbose: bool, daemon: bool) -> None:
    """Configure the `ulogpy` logger; raises OSError if the log file cannot be opened."""
    for handler in list(ROOT.handlers):
        ROOT.removeHandler(handler)
        handler.close()
    handlers: list[logging.Handler] = []
    if logfile == "syslog":
        address = "/dev/log" if os.path.exists("/dev/log") else ("localhost", 514)
        sh = logging.handlers.SysLogHandler(
            address=address, facility=logging.handlers.SysLogHandler.LOG_DAEMON
        )
        sh.ident = "ulogpy: "
        sh.setFormatter(logging.Formatter("%(message)s"))
        handlers.append(sh)
    elif logfile == "stdout":
        handlers.append(logging.StreamHandler(sys.stdout))
    elif logfile:
        os.makedirs(os.path.dirname(os.path.abspath(logfile)), mode=0o755, exist_ok=True)
        handlers.append(ReopenableFileHandler(logfile, encoding="utf-8"))
    else:
        handlers.append(logging.StreamHandler(sys.stderr))
    if verbose and not daemon and logfile not in (None, "syslog"):
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        if not isinstance(handler, logging.handlers.SysLogHandler):
            handler.setFormatter(UlogdFormatter())
        ROOT.addHandler(handler)
    ROOT.setLevel(level)
    ROOT.propagate = False


def reopen_logfile() -> None:
    for handler in ROOT.handlers:
        if isinstance(handler, ReopenableFileHandler):
            handler.reopen()


def flush_log() -> None:
    for handler in ROOT.handlers:
        handler.flush()
