"""IPv4 header, then the transport layer, as ulogd's BASE decodes them.

Kept as ulogd does (visible in JSON and database output, spec 8.3 B4):

* a packet holding only the IP header (length not above ``IHL * 4``)
  decodes nothing at all;
* `ip.fragoff` is the whole 16-bit word, flags included (CE 0x8000,
  DF 0x4000, MF 0x2000, offset in 8-byte units in the low 13 bits);
* every fragment's payload is decoded as if it began with the transport
  header, non-first fragments included;
* the transport header starts at ``IHL * 4`` whatever the IHL, even below 5.

Lengths come from the captured bytes (`raw.pktlen`), never from the header's
total length, so nothing past the buffer is read.
"""

from __future__ import annotations

from ulogpy.core.keys import IPADDR, U8, U16
from ulogpy.packet.fields import OK, TRUNCATED, Field, Header
from ulogpy.packet.icmp import IPPROTO_ICMP, decode_icmp
from ulogpy.packet.transport import (
    IPPROTO_SCTP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    decode_sctp,
    decode_tcp,
    decode_udp,
)

ETH_P_IP = 0x0800
MIN_LEN = 20

IPV4 = Header("ipv4", (
    Field("ip.saddr", 12, "4s", IPADDR),
    Field("ip.daddr", 16, "4s", IPADDR),
    Field("ip.protocol", 9, "B", U8),
    Field("ip.tos", 1, "B", U8),
    Field("ip.ttl", 8, "B", U8),
    Field("ip.totlen", 2, "H", U16),
    Field("ip.ihl", 0, "B", U8, bits=(0, 0xF)),
    Field("ip.csum", 10, "H", U16),
    Field("ip.id", 4, "H", U16),
    Field("ip.fragoff", 6, "H", U16),
), returns=("ip.protocol",))

#: The transport layers ulogd decodes inside IPv4 (AH/ESP: none, spec 8.3 B3).
TRANSPORT = {
    IPPROTO_TCP: decode_tcp,
    IPPROTO_UDP: decode_udp,
    IPPROTO_ICMP: decode_icmp,
    IPPROTO_SCTP: decode_sctp,
}

_ipv4 = IPV4.compile()
_transport = TRANSPORT.get


def decode_ipv4(buf, n: int, out: dict) -> int:
    """The IPv4 packet in ``buf[:n]`` (``n <= len(buf)``)."""
    if n < MIN_LEN:
        return TRUNCATED
    hlen = (buf[0] & 0xF) << 2
    if n <= hlen:
        return TRUNCATED
    (proto,) = _ipv4(buf, 0, out)
    layer = _transport(proto)
    if layer is None:
        return OK
    return layer(buf, hlen, n - hlen, out)
