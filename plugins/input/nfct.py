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
"""

from __future__ import annotations

import logging
import signal
import struct
import time

from ulogpy.plugins.input.ctfilter import FlowFilter, check_networks, check_protocols

from ulogpy.core.keys import IPADDR, RAW, U8, U16, U32, U64, Key, keys
from ulogpy.core.plugin import DataType, Option, PluginError
from ulogpy.netlink import conntrack as ct
from ulogpy.netlink import nlsock
from ulogpy.netlink.attrs import MalformedMessage
from ulogpy.transports.netlink_input import NetlinkInput

log = logging.getLogger("ulogpy.nfct")
NEW, UPDATE, DESTROY = ct.EVENT_NEW, ct.EVENT_UPDATE, ct.EVENT_DESTROY
#: nlmsg_len of the first message of a datagram.
_MSG_LEN = struct.Struct("=I").unpack_from
#: The keys of a DESTROY that only a resync saw (the flow's identity, no counters).
_FLOW_KEYS = (
    "orig.ip.saddr", "orig.ip.daddr", "orig.ip.protocol", "orig.l4.sport", "orig.l4.dport",
    "reply.ip.saddr", "reply.ip.daddr", "reply.ip.protocol", "reply.l4.sport",
    "reply.l4.dport", "icmp.code", "icmp.type", "ct.mark", "ct.id", "oob.family",
    "oob.protocol",
)
#: What event mode keeps of a live flow besides its tuple key: start sec, start usec,
#: ct.id, ct.mark, zone, family.  Packed, because a firewall may hold a million flows:
#: about 240 bytes each with the key, where the NEW message in a tuple took 610.
_ALIVE = struct.Struct("=IIIIHB")
_ALIVE_PACK = _ALIVE.pack
_ALIVE_ID = struct.Struct("=8xI").unpack_from


def _lost_destroy_values(key: bytes, packed: bytes) -> dict:
    """The `_FLOW_KEYS` of a flow `alive` kept, decoded from a message rebuilt from it."""
    _sec, _usec, ct_id, mark, zone, family = _ALIVE.unpack(packed)
    tuples = key[:-2] if zone else key  # (the key ends with the zone when there is one)
    event = ct.decode_ct(ct.build_destroy_message(family, tuples, ct_id, mark, zone))
    values = event.values if event is not None else {}
    return {k: values[k] for k in _FLOW_KEYS if k in values}


def _record_of(message: bytes) -> dict:
    """The record of a conntrack message the hash kept (it decoded once already)."""
    event = ct.decode_ct(message)
    record = event.values if event is not None else {}
    record["ct"] = message
    return record


def _check_mask(value: int) -> str | None:
    return None if 0 < value <= 7 else "must combine 1 (NEW), 2 (UPDATE), 4 (DESTROY)"


def _ns_split(ns: int) -> tuple[int, int]:
    return ns // 1_000_000_000, (ns // 1000) % 1_000_000


class NFCT(NetlinkInput):
    name = "NFCT"
    socket_name = "ctnetlink"
    description = "Conntrack flows from the kernel (ctnetlink)"
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
    )

    def configure(self) -> None:
        cfg = self.config
        if cfg.pollinterval < 0:
            raise PluginError("pollinterval must be >= 0")
        if cfg.pollinterval and not cfg.hash_enable:
            raise PluginError("NFCT polling mode requires the hashtable (hash_enable=1)")
        self.filter = FlowFilter(
            cfg.accept_src_filter, cfg.accept_dst_filter, cfg.accept_proto_filter
        )
        self.filtering = self.filter.active
        self.hash_on = bool(cfg.hash_enable)
        #: Hash mode: tuple key -> (start sec, start usec, latest message) of the flows
        #: seen alive.  The message as the kernel sent it, not its record: a record takes
        #: six times the memory, and is only needed again when a flow vanishes unseen.
        self.flows: dict[bytes, tuple[int, int, bytes]] = {}
        #: Event mode with NEW and DESTROY: tuple key -> `_ALIVE` of the flows seen
        #: starting, for the resync after an overrun.
        self.alive: dict[bytes, bytes] | None = None
        if not self.hash_on and not cfg.pollinterval and cfg.event_mask & 5 == 5:
            self.alive = {}
        self.sock = None
        self.loop = None
        self.resync_pending = False

    # -- start / stop ---------------------------------------------------------
    def start(self, loop) -> None:
        cfg = self.config
        self.loop = loop
        self._enable_sysctls()
        try:
            if cfg.pollinterval:
                log.log(25, "NFCT working in polling mode")
                self._dump_into_hash(emit_vanished=False)
                loop.call_every(cfg.pollinterval, self._poll)
                return
            self.sock = nlsock.open_socket(groups=cfg.event_mask & 7)
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
    def _datagram(self, data: bytes) -> None:
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
            event = ct.decode_ct(data, offset, length)
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
            # _ns_split written out: this runs for every event
            record["ct.event"] = NEW
            ns = event.start_ns or time.time_ns()
            record["flow.start.sec"] = sec = ns // 1_000_000_000
            record["flow.start.usec"] = usec = ns // 1000 % 1_000_000
            if self.alive is not None:
                self.alive[event.tuple_key] = _ALIVE_PACK(sec, usec, record["ct.id"],
                                                          record["ct.mark"], event.zone,
                                                          event.family)
            self.emit(record)
        elif kind == DESTROY:
            if self.alive is not None:
                self.alive.pop(event.tuple_key, None)
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
        flows = self.flows
        key = event.tuple_key
        if kind == DESTROY:
            entry = flows.pop(key, None)
            record["ct.event"] = DESTROY
            if event.start_ns:  # the kernel's own start time beats our reception time of NEW
                record["flow.start.sec"], record["flow.start.usec"] = _ns_split(event.start_ns)
            elif entry is not None:
                record["flow.start.sec"], record["flow.start.usec"] = entry[0], entry[1]
            if entry is None:
                self.counters.add("destroy_untracked")
            sec, usec = _ns_split(event.stop_ns or time.time_ns())
            record["flow.end.sec"] = sec
            record["flow.end.usec"] = usec
            self.emit(record)
        else:
            self._track(key, event.start_ns, record["ct"])

    def _track(self, key: bytes, start_ns: int | None, message: bytes) -> None:
        """Remember a live flow (its start) or refresh what is known of it."""
        entry = self.flows.get(key)
        if entry is not None:
            self.flows[key] = (entry[0], entry[1], message)
        elif len(self.flows) >= self.config.hash_max_entries:
            self.counters.add("hash_full")
        else:
            self.flows[key] = (*_ns_split(start_ns or time.time_ns()), message)

    # -- overruns and resync --------------------------------------------------
    def after_overrun(self) -> None:
        if (self.hash_on or self.alive is not None) and not self.resync_pending:
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

    def _resync_events(self) -> None:
        """Event mode: emit the NEW and DESTROY events an overrun cost, marked `ct.resync`."""
        self.on_readable()  # what the socket still holds first, so nothing is reported twice
        alive = self.alive
        assert alive is not None
        now: dict[bytes, ct.CtEvent] = {}
        for event in self._dump():
            if not self.filtering or self.filter.accepts(event.values):
                now[event.tuple_key] = event
        end_sec, end_usec = _ns_split(time.time_ns())
        for key, event in now.items():
            known = alive.get(key)
            if known is not None:
                if _ALIVE_ID(known)[0] == event.values["ct.id"]:
                    continue  # the same connection, already reported
                # the tuple was reused by a new connection: the old one ended unseen
                self._emit_lost_destroy(key, alive.pop(key), end_sec, end_usec)
            record = event.values
            sec, usec = _ns_split(event.start_ns or time.time_ns())
            record.update({"ct.event": NEW, "flow.start.sec": sec, "flow.start.usec": usec,
                           "ct.resync": 1})
            alive[key] = _ALIVE_PACK(sec, usec, record["ct.id"], record["ct.mark"],
                                     event.zone, event.family)
            self.counters.add("resync_new")
            self.emit(record)
        for key in [k for k in alive if k not in now]:
            self._emit_lost_destroy(key, alive.pop(key), end_sec, end_usec)

    def _emit_lost_destroy(self, key: bytes, packed: bytes, end_sec: int,
                           end_usec: int) -> None:
        start_sec, start_usec = _ALIVE.unpack(packed)[:2]
        record = _lost_destroy_values(key, packed)
        record.update({"ct.event": DESTROY, "flow.start.sec": start_sec,
                       "flow.start.usec": start_usec, "flow.end.sec": end_sec,
                       "flow.end.usec": end_usec, "ct.resync": 1})
        self.counters.add("resync_destroy")
        self.emit(record)

    def _poll(self) -> None:
        try:
            self._dump_into_hash(emit_vanished=True)
        except OSError as exc:
            log.error("%s: table dump failed: %s", self.id, exc)

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
        # Gone from the kernel without a DESTROY seen: ulogd emits these with the start
        # only; ulogpy also sets the end to the time the disappearance was noticed.
        end_sec, end_usec = _ns_split(time.time_ns())
        for key in [k for k in self.flows if k not in seen]:
            start_sec, start_usec, message = self.flows.pop(key)
            record = _record_of(message)
            record["ct.event"] = DESTROY
            record["flow.start.sec"], record["flow.start.usec"] = start_sec, start_usec
            record["flow.end.sec"], record["flow.end.usec"] = end_sec, end_usec
            self.counters.add("vanished")
            self.emit(record)

    def _dump(self, reset_counters: bool = False):
        request = ct.build_dump_request(nlsock.next_seq(), zero_counters=reset_counters)
        sock = nlsock.open_socket()
        try:
            for buf, offset, length in nlsock.dump(sock, request):
                try:
                    event = ct.decode_ct(buf, offset, length)
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
                entry = self.flows.get(event.tuple_key)
                if entry is not None:
                    record["flow.start.sec"], record["flow.start.usec"] = entry[0], entry[1]
                elif event.start_ns:
                    record["flow.start.sec"], record["flow.start.usec"] = \
                        _ns_split(event.start_ns)
                record["ct.event"] = UPDATE
                self.emit(record)
        except OSError as exc:
            log.error("%s: SIGUSR2 dump failed: %s", self.id, exc)
