"""IPFIX: conntrack flows as IPFIX (RFC 7011) messages to a collector, over TCP or UDP.

By default the messages are ulogd 2.0.8's: template 256 (IPv4 addresses,
32-bit total counters, start/end seconds, ports, protocol, applicationId =
ct.mark), records packed until `mtu` bytes, the template set as
`send_template` says.  What differs from ulogd, on purpose:

* records wait at most a second for a message to fill (ulogd arms that timer
  once, so its records wait for a full message, and are lost at exit: O14);
* the sequence number is RFC 7011's (records sent before the message; ulogd
  counts those in it too), and starts again with the template set on each
  new TCP connection (the collector forgets templates with the session);
* a collector down at start or later is retried behind the output's queue,
  as for every output; `host` may also be a name or an IPv6 address (ulogd
  takes IPv4 literals only);
* an IPv6 flow is counted (`ipv6_skipped`) and not sent: ulogd writes the
  first 4 bytes of its addresses as an IPv4 address;
* over UDP with send_template=once the template is sent again every
  `template_refresh` seconds (RFC 7011 8.4), so a collector that restarts
  learns it.

`extended=1` (ulogpy's): templates 257 (IPv4) and 258 (IPv6) with 64-bit
counters, millisecond start/end, observationTimeMilliseconds and the RFC 8158
NAT fields from the conntrack reply tuple: postNATSourceIPv4Address (IPv6:
postNATSourceIPv6Address), postNAPTSourceTransportPort, natEvent.

Sample configuration::

    stack=ct1:NFCT,ipfix1:IPFIX

    [ct1]
    hash_enable=0
    event_mask=0x00000004

    [ipfix1]
    oid=1
    host="192.0.2.10"
    port=4739
    proto="tcp"
    extended=1
"""

from __future__ import annotations

import socket
import time

from ulogpy.plugins.output.ipfixmsg import (
    COMPAT,
    EXT4,
    EXT6,
    NFPROTO_IPV6,
    MessageBuilder,
    Template,
    smallest_mtu,
)

from ulogpy.core.keys import IPADDR, U8, U16, U32, U64, Key, keys
from ulogpy.core.plugin import (
    DataType,
    Option,
    OutputPlugin,
    PluginError,
    Unavailable,
    counters,
)
from ulogpy.delivery.options import queue_options
from ulogpy.transports.sockets import closed_by_peer

#: Seconds a send or a connect may take before the collector counts as gone.
SEND_TIMEOUT = 5.0
#: Records wait at most this long for a message to fill (ulogd's flush timer).
FLUSH_SECONDS = 1.0
#: Largest UDP payload over IPv4.
MAX_MTU = 65507


def _check_proto(value: str) -> str | None:
    return None if value in ("tcp", "udp") else f"unsupported protocol '{value}'"


def _check_port(value: int) -> str | None:
    return None if 0 < value < 65536 else f"{value} is not a port number"


def _check_onoff(value: int) -> str | None:
    return None if value in (0, 1) else "must be 0 or 1"


def _check_refresh(value: int) -> str | None:
    return None if value >= 0 else "must not be negative"


class CollectorTransport:
    """A TCP connection or UDP socket to the collector, written from the output's thread.

    `write` packs records into messages and sends them whole; a message cut by a
    lost connection is sent again whole, with the template, on the next one.
    """

    nonblocking = False
    #: The clock of the template refresh (a test may set another).
    clock = staticmethod(time.monotonic)

    def __init__(self, host: str, port: int, proto: str, builder: MessageBuilder,
                 send_template: str, refresh: int, plugin: IPFIX) -> None:
        self.host, self.port, self.proto = host, port, proto
        self.target = f"{proto}:{host}:{port}"
        self.builder = builder
        self.send_template = send_template
        self.refresh = refresh
        self.plugin = plugin
        self.sock: socket.socket | None = None
        self.addr: tuple | None = None
        #: When the template set was last sent in this session (None: not yet).
        self.template_at: float | None = None

    def open(self) -> None:
        kind = socket.SOCK_STREAM if self.proto == "tcp" else socket.SOCK_DGRAM
        try:
            infos = socket.getaddrinfo(self.host, self.port, 0, kind)
        except OSError as exc:
            raise Unavailable(f"can't connect to {self.target}: {exc.strerror or exc}") \
                from None
        last = "no address"
        for family, socktype, proto, _name, addr in infos:
            sock = socket.socket(family, socktype | socket.SOCK_CLOEXEC, proto)
            sock.settimeout(SEND_TIMEOUT)
            if self.proto == "tcp":
                try:
                    sock.connect(addr)
                except OSError as exc:
                    sock.close()
                    last = exc.strerror or str(exc)
                    continue
            self.sock, self.addr = sock, addr
            break
        else:
            raise Unavailable(f"can't connect to {self.target}: {last}")
        if self.proto == "tcp":  # a new session: the collector knows no template yet
            self.builder.restart()
            self.template_at = None

    def _with_template(self) -> bool:
        mode = self.send_template
        if mode == "never":
            return False
        if mode != "once":
            return True
        now = self.clock()
        due = self.template_at is None or (
            self.proto == "udp" and self.refresh and now - self.template_at >= self.refresh)
        if due:
            self.template_at = now
        return due

    def write(self, items: list) -> int:
        """Send the records that can go, in messages; returns how many reached the
        collector (skipped IPv6 ones count as rejected)."""
        chosen = self.plugin.choose(items)
        sock = self.sock
        assert sock is not None
        if self.proto == "tcp":
            self._check_peer(sock)
        sequence, template_at = self.builder.sequence, self.template_at
        messages = self.builder.pack([(t, r) for t, r, _i in chosen], self._with_template)
        sent = 0
        for message, count in messages:
            try:
                if self.proto == "tcp":
                    sock.sendall(message)
                else:
                    sock.sendto(message, self.addr)
            except OSError as exc:
                # unsent: numbering and template state go back to this message
                self.builder.sequence, self.template_at = sequence, template_at
                done = chosen[sent - 1][2] + 1 if sent else 0
                raise Unavailable(f"Failure sending message to {self.target}: "
                                  f"{exc.strerror or exc}", written=done) from None
            sequence, template_at = self.builder.sequence, self.template_at
            sent += count
        return sent

    def _check_peer(self, sock: socket.socket) -> None:
        """Noticed before sending, so no message goes into a dead connection's buffer."""
        problem = closed_by_peer(sock, self.target)
        if problem:
            raise Unavailable(problem)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class IPFIX(OutputPlugin):
    name = "IPFIX"
    description = "IPFIX (RFC 7011) flow export"
    input_type = DataType.FLOW
    counter_table = counters(
        ("ipv6_skipped", False, "IPv6 flows not sent (also counted as rejected): ulogd's "
                                "template has IPv4 addresses only; extended=1 sends them"),
    )
    options = (
        Option("oid", int, 0, help="observation domain id (must not be 0)"),
        Option("host", str, "", help="collector address or name"),
        Option("port", int, 4739, check=_check_port, help="1-65535, the collector's port"),
        Option("proto", str, "tcp", check=_check_proto, help="tcp or udp"),
        Option("mtu", int, 512, help="largest message in bytes"),
        Option("send_template", str, "once",
               help="once: in the first message (of each TCP connection); never; "
                    "anything else: in every message"),
        Option("extended", int, 0, check=_check_onoff, ulogd=False,
               help="0, or 1: IPv6 too, 64-bit counters, millisecond times, RFC 8158 NAT fields"),
        Option("template_refresh", int, 600, check=_check_refresh, ulogd=False,
               help="seconds between template sets (udp, send_template=once; 0: once only)"),
        *queue_options(),
    )
    input_keys = keys(
        ("orig.ip.saddr", IPADDR), ("orig.ip.daddr", IPADDR),
        ("orig.raw.pktcount", U64), ("orig.raw.pktlen", U64),
        ("reply.raw.pktcount", U64), ("reply.raw.pktlen", U64),
        ("flow.start.sec", U32), ("flow.start.usec", U32),
        ("flow.end.sec", U32), ("flow.end.usec", U32),
        ("orig.l4.sport", U16), ("orig.l4.dport", U16), ("orig.ip.protocol", U8),
        ("ct.mark", U32),
        Key("oob.family", U8, optional=True, ulogd=False),
        Key("reply.ip.daddr", IPADDR, optional=True, ulogd=False),
        Key("reply.l4.dport", U16, optional=True, ulogd=False),
        Key("ct.event", U32, optional=True, ulogd=False),
    )

    def configure(self) -> None:
        cfg = self.config
        if not cfg.oid:
            raise PluginError("invalid Observation ID (option 'oid' must not be 0)")
        if not cfg.host:
            raise PluginError("no destination host specified (option 'host')")
        self.extended = bool(cfg.extended)
        templates: tuple[Template, ...] = (EXT4, EXT6) if self.extended else (COMPAT,)
        low, high = smallest_mtu(templates), MAX_MTU
        if not low <= cfg.mtu <= high:
            raise PluginError(f"option 'mtu': {cfg.mtu} is out of range ({low}-{high}: a "
                              "message must hold the header, the template and a record)")
        builder = MessageBuilder(cfg.oid & 0xFFFFFFFF, cfg.mtu, templates)
        self.transport = CollectorTransport(cfg.host, cfg.port, cfg.proto, builder,
                                            cfg.send_template, cfg.template_refresh, self)

    def batching(self) -> tuple[int, float]:
        """Records wait up to a second for a message to fill, as ulogd meant them to."""
        return 2000, FLUSH_SECONDS

    def choose(self, items: list[dict]) -> list[tuple[Template, dict, int]]:
        """(template, record, index in `items`) of each record that can be sent; IPv6
        ones counted when the compatible template cannot carry them."""
        out = []
        skipped = 0
        for index, record in enumerate(items):
            v6 = record.get("oob.family") == NFPROTO_IPV6 or \
                len(record.get("orig.ip.saddr", b"")) == 16
            if not self.extended:
                if v6:
                    skipped += 1
                    continue
                out.append((COMPAT, record, index))
            else:
                out.append((EXT6 if v6 else EXT4, record, index))
        if skipped:
            self.counters.add("ipv6_skipped", skipped)
        return out
