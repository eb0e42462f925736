"""The part PGSQL and SQLITE3 share: queue, spool, writer thread, counters, options.

`write()` runs in the reader's thread and only queues the record; the
worker thread does everything that can wait on the database.  A database
that is unreachable at start does not fail start-up: rows queue, then
spool, until it answers.
"""

from __future__ import annotations

import logging
import os
import signal

from ulogpy.core.keys import KeyType
from ulogpy.core.plugin import DataType, Option, OutputPlugin, PluginError
from ulogpy.db.backlog import Backlog
from ulogpy.db.worker import Sink, Worker
from ulogpy.delivery.spool import Spool, encode_record

log = logging.getLogger("ulogpy.db")
NOTICE = 25
DEFAULT_SPOOL = "/var/lib/ulogpy/spool"
DEFAULT_MEMORY_ROWS = 10000


def _positive(value: int) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _not_negative(value: int) -> str | None:
    return None if value >= 0 else "must be 0 or more"


#: ulogpy's own options of every SQL output (after ulogd's, marked [ulogpy] by -i).
QUEUE_OPTIONS = (
    Option("spool_dir", str, DEFAULT_SPOOL, ulogd=False,
           help="directory for rows the database cannot take yet (a subdirectory per "
                "instance is used)"),
    Option("spool_max_mb", int, 1024, ulogd=False, check=_positive,
           help="size limit of the spool in MiB; rows beyond it are dropped and counted"),
    Option("memory_rows", int, 0, ulogd=False, check=_not_negative,
           help="rows queued in memory before spooling (0: ring_buffer_size, else "
                f"backlog_memcap/1024, else {DEFAULT_MEMORY_ROWS})"),
    Option("batch_rows", int, 500, ulogd=False, check=_positive,
           help="rows per database transaction, at most (a quiet daemon writes what it has)"),
    Option("flush_timeout", int, 5, ulogd=False, check=_not_negative,
           help="seconds to flush to the database at exit before spooling the rest"),
    Option("reconnect_max", int, 60, ulogd=False, check=_positive,
           help="longest wait between reconnect attempts, in seconds (backoff doubles)"),
)


class DbOutput(OutputPlugin):
    """Base of the SQL outputs: subclasses build their `Sink` in `make_sink`."""

    input_type = DataType.PACKET | DataType.FLOW | DataType.SUM
    section_required = True
    wildcard_input = True

    def make_sink(self) -> Sink:
        raise NotImplementedError

    def memory_rows(self) -> int:
        return self.config.memory_rows or DEFAULT_MEMORY_ROWS

    def initial_backoff(self) -> float:
        return 2.0

    def configure(self) -> None:
        # Only keys with a value worth keeping go to the spool (RAW keys are pointers).
        self.spool_keys = frozenset(k.name for k in self.stack_keys
                                    if k.type not in (KeyType.RAW, KeyType.NONE))
        self.sink = self.make_sink()
        self.spool: Spool | None = None
        self.backlog: Backlog | None = None
        self.worker: Worker | None = None

    @property
    def spool_path(self) -> str:
        return os.path.join(self.config.spool_dir, self.id)

    def start(self, loop) -> None:
        keys = self.spool_keys
        spool = Spool(self.spool_path, self.config.spool_max_mb << 20,
                      lambda record: encode_record(record, keys))
        try:
            left = spool.open()
        except OSError as exc:
            log.error("%s: no spool (%s): rows beyond memory will be dropped", self, exc)
            spool = None
        else:
            if left:
                log.log(NOTICE, "%s: %d rows left in %s by an earlier run, replaying them "
                        "first", self, left, self.spool_path)
        self.spool = spool
        self.backlog = Backlog(self.memory_rows(), spool, str(self), self.counters)
        cfg = self.config
        self.worker = Worker(self.sink, self.backlog, self.counters, label=str(self),
                             batch_rows=cfg.batch_rows, backoff=self.initial_backoff(),
                             backoff_max=cfg.reconnect_max)
        # The per-event path is the backlog's `put` itself (the runner binds `write`
        # after start).
        self.write = self.backlog.put  # type: ignore[method-assign]
        self.worker.start()

    def write(self, record: dict) -> None:
        raise PluginError("output not started")

    def flush(self, force: bool = False) -> None:
        if self.backlog is not None:
            self.backlog.flush()

    def signal(self, signum: int) -> None:
        if signum == signal.SIGHUP and self.worker is not None:
            self.worker.request_reconnect()

    def stop(self) -> None:
        if self.worker is None or self.backlog is None:
            return
        leftovers = self.worker.stop(self.config.flush_timeout)
        self.worker = None
        if leftovers:
            if self.spool is not None:
                try:
                    self.spool.prepend(leftovers)
                except OSError as exc:
                    self.counters.add("dropped", len(leftovers))
                    log.error("%s: could not spool %d rows at exit: %s", self, len(leftovers),
                              exc)
                else:
                    self.counters.add("spooled", len(leftovers))
                    log.log(NOTICE, "%s: %d rows not yet in the database saved to %s",
                            self, len(leftovers), self.spool_path)
            else:
                self.counters.add("dropped", len(leftovers))
                log.error("%s: %d rows lost at exit (no spool)", self, len(leftovers))
        if self.spool is not None:
            if self.spool.rows_on_disk:
                log.log(NOTICE, "%s: %d rows wait in %s for the next start", self,
                        self.spool.rows_on_disk, self.spool_path)
            self.spool.close()
            self.spool = None
