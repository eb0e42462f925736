"""NFCT: conntrack flows from ctnetlink (spec 4.2).

Event mode with the hash (default): one record per connection, at DESTROY,
carrying the start time remembered from NEW.  Event mode without the hash:
each NEW and DESTROY as it comes.  Polling mode (`pollinterval`): periodic
table dumps, a record when a connection disappears.

Unlike ulogd: the socket buffer is large by default (`nlsock.DEFAULT_RCVBUF`,
growing up to `DEFAULT_RCVBUF_MAX`) when the configuration leaves both sizes
at 0, since a conntrack flush sends tens of thousands of events at once; every
overrun (ENOBUFS) is counted and grows the buffer; and a resync after
`netlink_resync_timeout` recovers what the overrun cost.  In hash mode the
dump rebuilds the hash and emits the DESTROYs that were missed.  In event
mode with NEW and DESTROY, the plugin remembers the tuples of the flows it
saw start (about 240 bytes each), so the dump tells which NEW and which
DESTROY events were lost: those are emitted then, marked with the ulogpy
key `ct.resync` = 1 (a DESTROY found that way ends at the time of the dump).

`network_namespace_path` (ulogd 2.0.9's option; `-i` marks it, as 2.0.8 lacks it)
reads another network namespace's conntrack: the event socket, every dump and the
`conntrack_*` sysctls are opened there, so one daemon logs several containers::

    [ct_web]
    hash_enable = 0
    network_namespace_path = "/run/netns/web"

What is remembered of the flows, and what a dump says was lost, is `ctflows`
(no socket, unit-tested on recorded messages); this module reads the kernel,
runs the timers and emits.
"""

from __future__ import annotations

import logging
import signal
import struct
import time

from ulogpy.plugins.input.ctfilter import FlowFilter, check_networks, check_protocols
from ulogpy.plugins.input.ctflows import FlowTable, LiveFlows, ns_split

from ulogpy.core.keys import IPADDR, RAW, U8, U16, U32, U64, Key, keys
from ulogpy.core.loopapi import LoopAPI
from ulogpy.core.plugin import DataType, Option, PluginError, counters
from ulogpy.netlink import conntrack as ct
from ulogpy.netlink import nlsock
from ulogpy.netlink.attrs import MalformedMessage
from ulogpy.transports.netlink_input import NETNS_OPTION, NetlinkInput

log = logging.getLogger("ulogpy.nfct")
NEW, UPDATE, DESTROY = ct.EVENT_NEW, ct.EVENT_UPDATE, ct.EVENT_DESTROY
#: nlmsg_len of the first message of a datagram.
_MSG_LEN = struct.Struct("=I").unpack_from
#: How many failures of a timer or signal action are logged in full before only counting.
LOGGED_FAILURES = 5


def _check_mask(value: int) -> str | None:
    return None if 0 < value <= 7 else "must combine 1 (NEW), 2 (UPDATE), 4 (DESTROY)"


class NFCT(NetlinkInput):
    name = "NFCT"
    socket_name = "ctnetlink"
    description = "Conntrack flows from the kernel (ctnetlink)"
    counter_table = counters(
        ("malformed", True, "conntrack messages that could not be decoded"),
        ("ignored", False, "messages that are no conntrack event"),
        ("filtered", False, "flows the accept filters left out"),
        ("updates_ignored", False, "UPDATE events (not logged)"),
        ("destroy_untracked", False, "DESTROY of a flow the hash never saw"),
        ("hash_full", True, "flows not tracked: hash_max_entries reached"),
        ("vanished", False, "flows gone without a DESTROY (found by a dump)"),
        ("resyncs", False, "table dumps after an overrun"),
        ("resync_new", False, "NEW events recovered by a resync"),
        ("resync_destroy", False, "DESTROY events recovered by a resync"),
    )
    output_type = DataType.FLOW
    section_required = True
    options = (
        Option("pollinterval", int, 0, help="0: event mode; N > 0: dump the table every N s"),
        Option("hash_enable", int, 1, help="1: one record per flow at DESTROY; 0: every event"),
        Option("hash_buckets", int, 8192, help="kept for compatibility (Python dicts size "
               "themselves)"),
        Option("hash_max_entries", int, 32768, help="flows tracked at most in hash mode"),
        Option("event_mask", int, 5, check=_check_mask,
               help="1 NEW | 2 UPDATE | 4 DESTROY, e.g. 0x00000005"),
        Option("netlink_socket_buffer_size", int, 0, help="socket receive buffer in bytes "
               f"(0 with maxsize 0: ulogpy's default, {nlsock.DEFAULT_RCVBUF >> 20} MiB)"),
        Option("netlink_socket_buffer_maxsize", int, 0, help="grow the buffer up to this on "
               f"overruns (0 with size 0: {nlsock.DEFAULT_RCVBUF_MAX >> 20} MiB)"),
        Option("netlink_resync_timeout", int, 60, help="seconds after an overrun before "
               "the table is dumped to recover lost events"),
        Option("reliable", int, 0, help="1: NETLINK_BROADCAST_ERROR and NETLINK_NO_ENOBUFS"),
        Option("accept_src_filter", str, "", check=check_networks,
               help="addr/len[,addr/len...] on the original source"),
        Option("accept_dst_filter", str, "", check=check_networks,
               help="addr/len[,addr/len...] on the original destination"),
        Option("accept_proto_filter", str, "", check=check_protocols,
               help="protocol names from /etc/protocols, e.g. tcp,udp"),
        Option("conntrack_acct", int, 0, ulogd=False,
               help="1: turn on net.netfilter.nf_conntrack_acct at start (byte/packet counters)"),
        Option("conntrack_timestamp", int, 0, ulogd=False,
               help="1: turn on net.netfilter.nf_conntrack_timestamp at start (kernel times)"),
        Option("exact_start", int, 0, ulogd=False,
               help="1: NEW carries the kernel's own time stamp of the event (kernels >= "
                    "6.14 with conntrack_timestamp) in the ulogpy key flow.start.ns; "
                    "ulogd's flow.start.* stay the time of receipt"),
        NETNS_OPTION,
    )
    output_keys = keys(
        ("orig.ip.saddr", IPADDR), ("orig.ip.daddr", IPADDR), ("orig.ip.protocol", U8),
        ("orig.l4.sport", U16), ("orig.l4.dport", U16), ("orig.raw.pktlen", U64),
        ("orig.raw.pktcount", U64),
        ("reply.ip.saddr", IPADDR), ("reply.ip.daddr", IPADDR), ("reply.ip.protocol", U8),
        ("reply.l4.sport", U16), ("reply.l4.dport", U16), ("reply.raw.pktlen", U64),
        ("reply.raw.pktcount", U64),
        ("icmp.code", U8), ("icmp.type", U8), ("ct.mark", U32), ("ct.id", U32),
        ("ct.event", U32), ("flow.start.sec", U32), ("flow.start.usec", U32),
        ("flow.end.sec", U32), ("flow.end.usec", U32), ("oob.family", U8),
        ("oob.protocol", U8), ("ct", RAW),
        Key("ct.resync", U8, ulogd=False),
        Key("flow.start.ns", U64, ulogd=False),
    )

    def configure(self) -> None:
        cfg = self.config
        #: This instance's decoder, with the message shapes it has learnt.
        self.decode = ct.CtDecoder().decode
        if cfg.pollinterval < 0:
            raise PluginError("pollinterval must be >= 0")
        if cfg.pollinterval and not cfg.hash_enable:
            raise PluginError("NFCT polling mode requires the hashtable (hash_enable=1)")
        self.filter = FlowFilter(
            cfg.accept_src_filter, cfg.accept_dst_filter, cfg.accept_proto_filter
        )
        self.filtering = self.filter.active
        self.hash_on = bool(cfg.hash_enable)
        self.exact_start = bool(cfg.exact_start)
        #: Hash mode: the flows seen alive (empty in event mode, SIGUSR2 looks it up).
        self.table = FlowTable(cfg.hash_max_entries, self.counters)
        self._track = self.table.track
        #: Event mode with NEW and DESTROY: the flows seen starting, for the resync
        #: after an overrun.
        self.live: LiveFlows | None = None
        if not self.hash_on and not cfg.pollinterval and cfg.event_mask & 5 == 5:
            self.live = LiveFlows(self.counters)
        self.sock = None
        self.loop = None
        self.resync_pending = False

    # -- start / stop ---------------------------------------------------------
    def start(self, loop: LoopAPI) -> None:
        cfg = self.config
        self.loop = loop
        self.in_namespace(self._enable_sysctls)  # the namespace's own net.netfilter sysctls
        try:
            if cfg.pollinterval:
                log.log(25, "NFCT working in polling mode")
                self._dump_into_hash(emit_vanished=False)
                loop.call_every(cfg.pollinterval, self._poll)
                return
            self.sock = self.open_netlink(groups=cfg.event_mask & 7)
        except OSError as exc:
            raise PluginError(f"cannot open ctnetlink socket: {exc.strerror}") from None
        self.sock.setblocking(False)
        self.size_buffer()
        if cfg.reliable:
            nlsock.set_reliable(self.sock, True)
            log.log(25, "NFCT reliable logging has been enabled.")
        if self.hash_on:
            try:
                self._dump_into_hash(emit_vanished=False)
            except OSError as exc:
                raise PluginError(f"cannot dump the conntrack table: {exc.strerror}") from None
        log.log(25, "NFCT plugin working in event mode")
        loop.add_reader(self.sock, self.on_readable)

    def _enable_sysctls(self) -> None:
        for option, name in (("conntrack_acct", "net.netfilter.nf_conntrack_acct"),
                             ("conntrack_timestamp", "net.netfilter.nf_conntrack_timestamp")):
            if not getattr(self.config, option):
                continue
            try:
                before = nlsock.set_sysctl(name, "1")
            except OSError as exc:
                raise PluginError(f"cannot turn on {name}: {exc.strerror}") from None
            if before.strip() != "1":
                log.log(25, "%s: turned on %s (was %s)", self.id, name, before.strip())
            else:
                log.info("%s: %s already on", self.id, name)

    def stop(self) -> None:
        if self.sock is not None:
            if self.loop is not None:
                self.loop.remove_reader(self.sock)
            self.sock.close()
            self.sock = None

    # -- event mode -----------------------------------------------------------
    def receive(self, data: bytes) -> None:
        """Every conntrack message of one datagram (the daemon's guard wraps this)."""
        try:
            if len(data) >= 4 and _MSG_LEN(data)[0] == len(data):
                self._handle(data, 0, len(data))  # an event datagram holds one message
                return
            handle = self._handle
            for offset, length, *_ in nlsock.iter_messages(data):
                handle(data, offset, length)
        except MalformedMessage:
            self.counters.add("malformed")

    def _handle(self, data: bytes, offset: int, length: int) -> None:
        try:
            event = self.decode(data, offset, length)
        except MalformedMessage:
            self.counters.add("malformed")
            return
        if event is None:
            self.counters.add("ignored")
            return
        record = event.values
        record["ct"] = data[offset:offset + length]  # ulogd's raw conntrack object (OPRINT)
        if self.filtering and not self.filter.accepts(record):
            self.counters.add("filtered")
            return
        kind = event.event
        if self.hash_on:
            self._hash_event(kind, event, record)
        elif kind == NEW:
            # ns_split written out: this runs for every event
            record["ct.event"] = NEW
            ns = event.start_ns or time.time_ns()
            record["flow.start.sec"] = sec = ns // 1_000_000_000
            record["flow.start.usec"] = usec = ns // 1000 % 1_000_000
            if self.exact_start and event.event_ns:
                record["flow.start.ns"] = event.event_ns
            if self.live is not None:
                self.live.started(event, sec, usec)
            self.emit(record)
        elif kind == DESTROY:
            if self.live is not None:
                self.live.ended(event.tuple_key)
            record["ct.event"] = DESTROY
            ns = event.start_ns
            if ns:
                record["flow.start.sec"] = ns // 1_000_000_000
                record["flow.start.usec"] = ns // 1000 % 1_000_000
            ns = event.stop_ns or time.time_ns()
            record["flow.end.sec"] = ns // 1_000_000_000
            record["flow.end.usec"] = ns // 1000 % 1_000_000
            self.emit(record)
        else:
            self.counters.add("updates_ignored")

    def _hash_event(self, kind: int, event, record: dict) -> None:
        if kind == DESTROY:
            self.table.destroy(event, record)
            self.emit(record)
        else:
            self._track(event.tuple_key, event.start_ns, record["ct"])

    # -- overruns and resync --------------------------------------------------
    def after_overrun(self) -> None:
        if (self.hash_on or self.live is not None) and not self.resync_pending:
            self.resync_pending = True
            self.loop.call_later(self.config.netlink_resync_timeout, self._resync)

    def _resync(self) -> None:
        self.resync_pending = False
        self.counters.add("resyncs")
        try:
            if self.hash_on:
                self._dump_into_hash(emit_vanished=True)
            else:
                self._resync_events()
        except OSError as exc:
            log.error("%s: resync failed: %s", self.id, exc)
        except Exception as exc:  # a timer: nothing may escape into the loop
            self._failed("resync", exc)

    def _resync_events(self) -> None:
        """Event mode: emit the NEW and DESTROY events an overrun cost, marked `ct.resync`."""
        self.catch_up()  # what was read and what the socket holds first: nothing twice
        assert self.live is not None
        dumped = (event for event in self._dump()
                  if not self.filtering or self.filter.accepts(event.values))
        for record in self.live.resync(dumped):
            self.emit(record)

    def _poll(self) -> None:
        try:
            self._dump_into_hash(emit_vanished=True)
        except OSError as exc:
            log.error("%s: table dump failed: %s", self.id, exc)
        except Exception as exc:  # a timer: nothing may escape into the loop
            self._failed("table dump", exc)

    def _failed(self, what: str, exc: Exception) -> None:
        """A timer or signal action failed on something other than the socket: count it
        as `failed` (a loss: what it should have emitted is gone) and log the first few."""
        self.counters.add("failed")
        if self.counters.get("failed") <= LOGGED_FAILURES:
            log.error("%s: %s failed: %r", self.id, what, exc, exc_info=exc)

    def _dump_into_hash(self, emit_vanished: bool, reset_counters: bool = False) -> None:
        """Dump the kernel table into the hash; emit DESTROY for flows that vanished."""
        seen = set()
        for event in self._dump(reset_counters):
            if self.filtering and not self.filter.accepts(event.values):
                continue
            seen.add(event.tuple_key)
            self._track(event.tuple_key, event.start_ns, event.values["ct"])
        if not emit_vanished:
            return
        for record in self.table.vanished(seen):  # gone from the kernel, no DESTROY seen
            self.emit(record)

    def _dump(self, reset_counters: bool = False):
        request = ct.build_dump_request(nlsock.next_seq(), zero_counters=reset_counters)
        sock = self.open_netlink()
        try:
            for buf, offset, length in nlsock.dump(sock, request):
                try:
                    event = self.decode(buf, offset, length)
                except MalformedMessage:
                    self.counters.add("malformed")
                    continue
                if event is not None:
                    event.values["ct"] = bytes(buf[offset:offset + length])
                    yield event
        finally:
            sock.close()

    # -- signals --------------------------------------------------------------
    def signal(self, signum: int) -> None:
        if signum != signal.SIGUSR2:
            return
        # Dump with counter reset; each flow is emitted as UPDATE with the pre-reset counters.
        try:
            for event in self._dump(reset_counters=True):
                record = event.values
                if self.filtering and not self.filter.accepts(record):
                    continue
                if self.hash_on:
                    self._track(event.tuple_key, event.start_ns, record["ct"])
                entry = self.table.get(event.tuple_key)
                if entry is not None:
                    record["flow.start.sec"], record["flow.start.usec"] = entry[0], entry[1]
                elif event.start_ns:
                    record["flow.start.sec"], record["flow.start.usec"] = \
                        ns_split(event.start_ns)
                record["ct.event"] = UPDATE
                self.emit(record)
        except OSError as exc:
            log.error("%s: SIGUSR2 dump failed: %s", self.id, exc)
        except Exception as exc:  # the runner guards signals too; count it here as well
            self._failed("SIGUSR2 dump", exc)
