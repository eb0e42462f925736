"""The part PGSQL and SQLITE3 share: the options and their mapping onto the delivery model.

The output is its transport (a `PgSink` or `SqliteSink`, made by the
subclass's `make_sink`), written from a thread by the delivery model, which
batches (`batch_rows`), keeps every row while the database is away (memory,
then the spool: a database spools by default), retries with backoff up to
`reconnect_max`, and at exit gives the database `flush_timeout` seconds
before spooling the rest.  A database that is unreachable at start does not
fail start-up.

ulogd's own buffer options keep working: `ring_buffer_size` (rows), else
`backlog_memcap` (bytes, about 1 KiB a row) set the memory queue when
`queue_size` is not given.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ulogpy.core.plugin import DataType, Option, OutputPlugin, Transport
from ulogpy.delivery.options import queue_options

log = logging.getLogger("ulogpy.db")
DEFAULT_QUEUE_ROWS = 10000
#: ulogd's `connect_timeout=0`: libpq and libmysqlclient would wait for ever, ulogpy 5 s.
DEFAULT_CONNECT_TIMEOUT = 5


def _positive(value: int) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _not_negative(value: int) -> str | None:
    return None if value >= 0 else "must be 0 or more"


#: Rows per transaction at most, by default (SQLITE3 has its own: `SQLITE_BATCH_ROWS`).
DEFAULT_BATCH_ROWS = 500


def db_options(batch_rows: int = DEFAULT_BATCH_ROWS) -> tuple[Option, ...]:
    """ulogpy's own options of every SQL output (after ulogd's, marked [ulogpy] by -i),
    with an output's own default for `batch_rows`."""
    return (
        *queue_options(size=DEFAULT_QUEUE_ROWS, policy="spool"),
        Option("batch_rows", int, batch_rows, ulogd=False, check=_positive,
               help="rows per database transaction, at most (a quiet daemon writes what it "
                    "has)"),
        Option("flush_timeout", int, 5, ulogd=False, check=_not_negative,
               help="seconds to flush to the database at exit before spooling the rest"),
        Option("reconnect_max", int, 60, ulogd=False, check=_positive,
               help="longest wait between reconnect attempts, in seconds (backoff doubles)"),
    )


DB_OPTIONS = db_options()


def ulogd_queue_size(cfg, label: object) -> None:
    """Size the memory queue from ulogd's `ring_buffer_size` (rows), else `backlog_memcap`
    (bytes, ~1 KiB a row), unless `queue_size` is given (PGSQL, MYSQL, DBI)."""
    if cfg.ring_buffer_size and cfg.backlog_memcap:
        log.warning("%s: ring_buffer_size and backlog_memcap both set: the ring buffer "
                    "size is used", label)
    if "queue_size" not in cfg.model_fields_set:
        if cfg.ring_buffer_size > 0:
            cfg.queue_size = cfg.ring_buffer_size
        elif cfg.backlog_memcap > 0:
            cfg.queue_size = max(1, cfg.backlog_memcap // 1024)


class DbOutput(OutputPlugin):
    """Base of the SQL outputs: subclasses build their transport in `make_sink`."""

    input_type = DataType.PACKET | DataType.FLOW | DataType.SUM
    section_required = True
    wildcard_input = True

    def make_sink(self) -> Transport:
        raise NotImplementedError

    def initial_backoff(self) -> float:
        return 2.0

    def configure(self) -> None:
        self.transport = self.make_sink()

    def batching(self) -> tuple[int, float]:
        return self.config.batch_rows, 0.0

    def backoff(self) -> tuple[float, float]:
        return self.initial_backoff(), float(self.config.reconnect_max)

    def stop_timeout(self) -> float:
        return float(self.config.flush_timeout)


def ulogd_common_options(check_procedure: Callable[[str], str | None]) -> tuple[Option, ...]:
    """The first options of ulogd's SQL layer (db.c), in its order: PGSQL, MYSQL, DBI."""
    return (
        Option("table", str, "", mandatory=True,
               help="table or view whose columns name the values to write"),
        Option("reconnect", int, 2,
               help="seconds before the first reconnect attempt (then doubling)"),
        Option("connect_timeout", int, 0,
               help=f"seconds a connection attempt may take (0: {DEFAULT_CONNECT_TIMEOUT})"),
        Option("procedure", str, "", mandatory=True, check=check_procedure,
               help="INSERT, INSERT INTO <table>, CALL <procedure> or a function name "
                    "such as INSERT_OR_REPLACE_CT"),
        Option("backlog_memcap", int, 0,
               help="bytes of rows kept in memory while the database is away (1 KiB a "
                    "row: sets queue_size)"),
        Option("backlog_oneshot_requests", int, 10,
               help="accepted for compatibility (ulogpy replays in batches)"),
        Option("ring_buffer_size", int, 0,
               help="rows kept in memory (sets queue_size; takes precedence)"),
    )


class UlogdSqlOutput(DbOutput):
    """Base of the outputs on ulogd's SQL layer (PGSQL, MYSQL, DBI): what its options
    (`ulogd_common_options`) mean is the same for every database."""

    def configure(self) -> None:
        ulogd_queue_size(self.config, self)
        super().configure()

    def initial_backoff(self) -> float:
        # ulogd: reconnect=0 disables the plugin for good; ulogpy keeps retrying.
        return float(max(1, self.config.reconnect))

    def connect_timeout(self) -> int:
        return self.config.connect_timeout or DEFAULT_CONNECT_TIMEOUT
