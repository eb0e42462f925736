"""ICMP and ICMPv6 headers as ulogd's BASE reads them (spec 4.4).

The four bytes after the checksum are a union whose meaning depends on the
type, so the table reads them once as a 32-bit word and each key takes its
part only for the types ulogd sets it for: echo id/sequence for echo
request/reply, the gateway for redirect (5) and parameter problem (12), the
MTU for "fragmentation needed" (type 3 code 4).

Kept as ulogd writes them (spec 8.3 B2): the checksums are the network bytes
read as a host integer (byte-swapped on x86), and `icmp.gateway` is stored as
a host-order integer, so its address bytes are reversed compared with
`ip.saddr` (PRINTPKT's `GATEWAY=` shows the reversed address, like ulogd's).
"""

from __future__ import annotations

from ulogpy.core.keys import IPADDR, U8, U16
from ulogpy.packet.fields import Field, Header

IPPROTO_ICMP, IPPROTO_ICMPV6 = 1, 58

ICMP = Header("icmp", (
    Field("icmp.type", 0, "B", U8),
    Field("icmp.code", 1, "B", U8),
    Field("icmp.echoid", 4, "I", U16, bits=(16, 0xFFFF), when="{icmp.type} in (0, 8)"),
    Field("icmp.echoseq", 4, "I", U16, bits=(0, 0xFFFF), when="{icmp.type} in (0, 8)"),
    Field("icmp.gateway", 4, "I", IPADDR, conv="host_ip4", when="{icmp.type} in (5, 12)"),
    Field("icmp.fragmtu", 4, "I", U16, bits=(0, 0xFFFF),
          when="{icmp.type} == 3 and {icmp.code} == 4"),
    Field("icmp.csum", 2, "H", U16, conv="host_u16"),
))

ICMPV6 = Header("icmpv6", (
    Field("icmpv6.type", 0, "B", U8),
    Field("icmpv6.code", 1, "B", U8),
    Field("icmpv6.echoid", 4, "H", U16, when="{icmpv6.type} in (128, 129)"),
    Field("icmpv6.echoseq", 6, "H", U16, when="{icmpv6.type} in (128, 129)"),
    Field("icmpv6.csum", 2, "H", U16, conv="host_u16"),
))

decode_icmp = ICMP.compile_layer()
decode_icmpv6 = ICMPV6.compile_layer()
