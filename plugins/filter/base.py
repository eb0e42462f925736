"""BASE: the raw packet of a packet input -> ulogd's header keys (spec 4.4).

The decoding lives in `ulogpy.packet` (declarative header tables compiled at
import time); this plugin only picks its inputs, hands the packet over and
counts what could not be decoded: `truncated` (a layer stopped because the
packet ended) and `unknown_family` (a family, or a bridge ethertype, that
BASE does not decode).  Like ulogd's BASE it always re-exports
`oob.protocol` (0 when the input has none) and never stops the stack.

Values are ulogd's, quirks included (see the `ulogpy.packet` modules), with
one exception: `arp.saddr`/`arp.daddr` hold the address bytes instead of
ulogd's pointers, so IP2STR prints the real ARP addresses.
"""

from __future__ import annotations

from ulogpy.core.keys import RAW, U8, U16, U32, keys
from ulogpy.core.plugin import DataType, FilterPlugin, counters
from ulogpy.packet import KEYS, OK, TRUNCATED, decode_packet

#: ulogd's output key order (`ulogd -i BASE`), which JSON and -i follow.
_ORDER = (
    "ip.saddr", "ip.daddr", "ip.protocol", "ip.tos", "ip.ttl", "ip.totlen", "ip.ihl",
    "ip.csum", "ip.id", "ip.fragoff",
    "ip6.payloadlen", "ip6.priority", "ip6.flowlabel", "ip6.hoplimit", "ip6.nexthdr",
    "ip6.fragoff", "ip6.fragid",
    "tcp.sport", "tcp.dport", "tcp.seq", "tcp.ackseq", "tcp.window", "tcp.offset",
    "tcp.reserved", "tcp.urg", "tcp.urgp", "tcp.ack", "tcp.psh", "tcp.rst", "tcp.syn",
    "tcp.fin", "tcp.res1", "tcp.res2", "tcp.csum",
    "udp.sport", "udp.dport", "udp.len", "udp.csum",
    "icmp.type", "icmp.code", "icmp.echoid", "icmp.echoseq", "icmp.gateway", "icmp.fragmtu",
    "icmp.csum",
    "icmpv6.type", "icmpv6.code", "icmpv6.echoid", "icmpv6.echoseq", "icmpv6.csum",
    "ahesp.spi", "oob.protocol",
    "arp.hwtype", "arp.protocoltype", "arp.operation", "arp.shwaddr", "arp.saddr",
    "arp.dhwaddr", "arp.daddr",
    "sctp.sport", "sctp.dport", "sctp.csum",
)
if set(_ORDER) != set(KEYS) or len(_ORDER) != len(KEYS):  # pragma: no cover - import check
    raise ImportError(f"BASE key order and ulogpy.packet keys differ: "
                      f"{sorted(set(_ORDER) ^ set(KEYS))}")


class BASE(FilterPlugin):
    name = "BASE"
    description = "Decode the IPv4/IPv6/ARP headers of a raw packet"
    counter_table = counters(
        ("truncated", False, "packets whose headers end early (fields left out)"),
    )
    input_type = DataType.RAW
    output_type = DataType.PACKET
    input_keys = keys(
        ("raw.pkt", RAW), ("raw.pktlen", U32), ("oob.family", U8), ("oob.protocol", U16),
    )
    output_keys = tuple(KEYS[name] for name in _ORDER)

    def interp(self, record: dict) -> bool | None:
        get = record.get
        protocol = get("oob.protocol", 0)
        record["oob.protocol"] = protocol
        status = decode_packet(
            get("raw.pkt") or b"", get("raw.pktlen", 0), get("oob.family", 0), protocol, record,
        )
        if status != OK:
            self.counters.add("truncated" if status == TRUNCATED else "unknown_family")
        return None
