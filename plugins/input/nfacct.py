"""NFACCT: the kernel's accounting objects, polled every `pollinterval` seconds (spec 4.3).

An accounting object is a named pair of packet and byte counters in the kernel
(`nfacct add NAME`), counted into by firewall rules (`iptables -m nfacct
--nfacct-name NAME`).  Every
`pollinterval` seconds, the first time one interval after start, NFACCT asks the
kernel for all of them and emits one event per object: `sum.name`, `sum.pkts`,
`sum.bytes`, and `sum` (the object's netlink message, as ulogd's raw object).
With `zerocounter=1` (the default) the request is the kernel's get-and-reset,
so each event carries what was counted since the previous query; with 0 the
counters keep growing.  With `timestamp=1` every event of one query carries the
time the query was sent in `oob.time.sec` / `oob.time.usec`.  SIGUSR2 queries at
once, besides the regular queries (it does not move them).

ulogd refuses a missing or zero `pollinterval` ("You have to set pollint");
ulogpy too, saying what is valid.  Like ulogd, the objects are those of the
daemon's network namespace, and two instances with `zerocounter=1` (or one of
them beside `nfacct list reset`) share the kernel's counters: each reset takes
the counts from the others.

Sample configuration::

    stack=acct1:NFACCT,graphite1:GRAPHITE

    [acct1]
    pollinterval=60
    zerocounter=1
    timestamp=1
"""

from __future__ import annotations

import logging
import signal
import time

from ulogpy.core.keys import RAW, STRING, U32, U64, keys
from ulogpy.core.loopapi import LoopAPI
from ulogpy.core.plugin import DataType, InputPlugin, Option, PluginError, counters
from ulogpy.netlink import acct, nlsock
from ulogpy.netlink.attrs import MalformedMessage

log = logging.getLogger("ulogpy.nfacct")
#: Longest wait for the kernel's answer to one query (it answers at once; this only
#: keeps a wedged socket from holding the event loop).
QUERY_TIMEOUT_S = 5.0
#: How many failed queries are logged in full before they are only counted.
LOGGED_FAILURES = 5


class NFACCT(InputPlugin):
    name = "NFACCT"
    description = "Accounting objects of the kernel (nfnetlink_acct), polled"
    counter_table = counters(
        ("queries", False, "queries sent to the kernel (timer and SIGUSR2)"),
        ("objects", False, "accounting objects reported (one event each)"),
        ("query_errors", True, "queries that failed: that interval's report is missing"),
        ("malformed", True, "accounting messages that could not be decoded, skipped"),
    )
    output_type = DataType.SUM
    section_required = True
    options = (
        Option("pollinterval", int, 0, help="seconds between queries; must be > 0"),
        Option("zerocounter", int, 1, help="1: get and reset (counts per interval); "
               "0: cumulative counters"),
        Option("timestamp", int, 0, help="1: oob.time.sec/usec = when the query was sent"),
    )
    output_keys = keys(
        ("sum.name", STRING), ("sum.pkts", U64), ("sum.bytes", U64), ("sum", RAW),
        ("oob.time.sec", U32), ("oob.time.usec", U32),
    )

    def configure(self) -> None:
        cfg = self.config
        if cfg.pollinterval <= 0:
            raise PluginError(
                f"option 'pollinterval' is {cfg.pollinterval}: you have to set pollinterval "
                "to the seconds between queries, a number greater than 0 (ulogd: "
                "'You have to set pollint')")
        self.zero = bool(cfg.zerocounter)
        self.stamp = bool(cfg.timestamp)
        self.loop: LoopAPI | None = None

    def start(self, loop: LoopAPI) -> None:
        try:  # what ulogd checks at start: the subsystem's socket can be had
            nlsock.open_socket().close()
        except OSError as exc:
            raise PluginError(f"cannot open nfnetlink_acct socket: {exc.strerror}") from None
        self.loop = loop
        loop.call_every(self.config.pollinterval, self.query)

    def signal(self, signum: int) -> None:
        if signum == signal.SIGUSR2:
            self.query()

    def query(self) -> None:
        """Ask the kernel for every object and emit one event per object."""
        self.counters.add("queries")
        try:
            for record in self._objects():
                self.emit(record)
        except OSError as exc:
            self._failed(f"query failed: {exc.strerror or exc}")
        except Exception as exc:  # a timer or signal: nothing may escape into the loop
            self._failed(f"query failed: {exc!r}", exc)

    def _objects(self) -> list[dict]:
        """The objects of one query as records (all read before any is emitted, so a
        failed query emits nothing and no half report goes out)."""
        now = time.time_ns()
        request = acct.build_get_request(nlsock.next_seq(), zero_counters=self.zero)
        records = []
        sock = nlsock.open_socket()
        try:
            sock.settimeout(QUERY_TIMEOUT_S)
            for buf, offset, length in nlsock.dump(sock, request):
                try:
                    found = acct.decode_acct(buf, offset, length)
                except MalformedMessage:
                    self.counters.add("malformed")
                    continue
                if found is None:
                    continue
                record = found.values()
                record["sum"] = bytes(buf[offset:offset + length])
                if self.stamp:
                    record["oob.time.sec"] = now // 1_000_000_000
                    record["oob.time.usec"] = now // 1000 % 1_000_000
                records.append(record)
        except TimeoutError:
            raise OSError("no answer from the kernel") from None
        finally:
            sock.close()
        self.counters.add("objects", len(records))
        return records

    def _failed(self, message: str, exc: Exception | None = None) -> None:
        self.counters.add("query_errors")
        if self.counters.get("query_errors") <= LOGGED_FAILURES:
            log.error("%s: %s", self.id, message, exc_info=exc)
