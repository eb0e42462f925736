"""IPv6 header, extension headers, then the transport layer, as ulogd decodes them.

The walk over extension headers follows ulogd's BASE (spec 4.4):

* hop-by-hop, routing and destination options (length ``(len + 1) * 8``),
  AH (``(len + 2) * 4``) and the fragment header (8 bytes) are walked;
* a fragment header sets `ip6.fragoff` (the offset in bytes, flag bits
  masked) and `ip6.fragid`; after a fragment with a non-zero offset the walk
  ends at the next header that is not itself a fragment header (which must
  still have two bytes in the packet), and no transport header is decoded;
* ESP ends the walk (its "length" is taken from the SPI's second byte, as
  ulogd does, and must fit in the packet);
* `ip.protocol` is the upper-layer protocol reached (not set for non-first
  fragments); `ip6.nexthdr` is the header type where the walk ended -- but
  neither is set when an extension header does not fit in the packet;
* TCP, UDP and ICMPv6 are decoded; SCTP and UDP-Lite are not (only
  `ip.protocol` names them).
"""

from __future__ import annotations

from ulogpy.core.keys import IPADDR, U8, U16, U32, Key
from ulogpy.packet.fields import OK, TRUNCATED, Field, Header
from ulogpy.packet.icmp import IPPROTO_ICMPV6, decode_icmpv6
from ulogpy.packet.transport import (
    IPPROTO_AH,
    IPPROTO_ESP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    decode_tcp,
    decode_udp,
)

ETH_P_IPV6 = 0x86DD
MIN_LEN = 40
IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_FRAGMENT, IPPROTO_DSTOPTS = 0, 43, 44, 60

IPV6 = Header("ipv6", (
    Field("ip.saddr", 8, "16s", IPADDR),
    Field("ip.daddr", 24, "16s", IPADDR),
    Field("ip6.payloadlen", 4, "H", U16),
    Field("ip6.priority", 0, "I", U8, bits=(20, 0xFF)),
    Field("ip6.flowlabel", 0, "I", U32, bits=(0, 0xFFFFF)),
    Field("ip6.hoplimit", 7, "B", U8),
    Field("_nexthdr", 6, "B"),
), returns=("_nexthdr",))

FRAGMENT = Header("ip6frag", (
    Field("_nexthdr", 0, "B"),
    Field("ip6.fragoff", 2, "H", U16, bits=(0, 0xFFF8)),
    Field("ip6.fragid", 4, "I", U32),
), returns=("_nexthdr", "ip6.fragoff"))

#: Extension headers with a length byte: type -> (bias, unit), the header's
#: size being ``(buf[1] + bias) * unit``.  The fragment header is fixed-size.
EXTENSIONS = {
    IPPROTO_HOPOPTS: (1, 8),
    IPPROTO_ROUTING: (1, 8),
    IPPROTO_DSTOPTS: (1, 8),
    IPPROTO_AH: (2, 4),
    IPPROTO_ESP: (2, 4),
}

#: Keys set by the walk itself rather than by a header table.
WALK_KEYS = (Key("ip6.nexthdr", U8), Key("ip.protocol", U8))

TRANSPORT = {
    IPPROTO_TCP: decode_tcp,
    IPPROTO_UDP: decode_udp,
    IPPROTO_ICMPV6: decode_icmpv6,
}

_ipv6 = IPV6.compile()
_fragment = FRAGMENT.compile()
_frag_size = FRAGMENT.size
_ext = EXTENSIONS.get
_transport = TRANSPORT.get


def decode_ipv6(buf, n: int, out: dict) -> int:
    """The IPv6 packet in ``buf[:n]`` (``n <= len(buf)``)."""
    if n < MIN_LEN:
        return TRUNCATED
    (cur,) = _ipv6(buf, 0, out)
    ptr, rem = MIN_LEN, n - MIN_LEN
    later_fragment = False
    while True:
        if cur == IPPROTO_FRAGMENT:
            if rem < _frag_size:
                return TRUNCATED
            nxt, offset = _fragment(buf, ptr, out)
            if offset:
                later_fragment = True
            size = _frag_size
        else:
            rule = _ext(cur)
            if rule is None:
                break
            if rem < 2:
                return TRUNCATED
            if later_fragment:
                out["ip6.nexthdr"] = cur
                return OK
            size = (buf[ptr + 1] + rule[0]) * rule[1]
            if rem < size:
                return TRUNCATED
            if cur == IPPROTO_ESP:
                out["ip6.nexthdr"] = cur
                return OK
            nxt = buf[ptr]
        rem -= size
        ptr += size
        cur = nxt
    out["ip6.nexthdr"] = cur
    if later_fragment:
        return OK
    out["ip.protocol"] = cur
    layer = _transport(cur)
    if layer is None:
        return OK
    return layer(buf, ptr, rem, out)
