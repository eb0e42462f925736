"""TCP, UDP and SCTP headers as ulogd's BASE reads them (spec 4.4).

Only the fixed part of each header is decoded (no TCP options, no SCTP
chunks).  Values ulogd gets wrong in a visible way are kept, since JSON and
database consumers already see them (spec 8.3 B1):

* `tcp.offset` and `tcp.reserved` go through ulogd's ``ntohs`` of a 4-bit
  field and come out 0;
* `tcp.res1` is the whole 4-bit reserved nibble and `tcp.res2` the two bits
  CWR/ECE as a number (0..3), although both are typed boolean;
* `tcp.urgp` is only set when URG is;

UDP-Lite (protocol 136) has the UDP layout but ulogd does not decode it: only
`ip.protocol` says 136.  `ahesp.spi` is declared by ulogd and never set
(spec 8.3 B3); it is listed here so the key exists, with no decoder.
"""

from __future__ import annotations

from ulogpy.core.keys import BOOL, U8, U16, U32, Key
from ulogpy.packet.fields import Field, Header

IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP, IPPROTO_UDPLITE = 6, 17, 132, 136
IPPROTO_ESP, IPPROTO_AH = 50, 51

TCP = Header("tcp", (
    Field("tcp.sport", 0, "H", U16, cim_name="src_port"),
    Field("tcp.dport", 2, "H", U16, cim_name="dest_port"),
    Field("tcp.seq", 4, "I", U32),
    Field("tcp.ackseq", 8, "I", U32),
    Field("tcp.offset", 12, "B", U8, bits=(4, 0xF), conv="ntohs_u8"),
    Field("tcp.reserved", 12, "B", U8, bits=(0, 0xF), conv="ntohs_u8"),
    Field("tcp.window", 14, "H", U16),
    Field("tcp.urg", 13, "B", BOOL, bits=(5, 1)),
    Field("tcp.urgp", 18, "H", U16, when="{tcp.urg}"),
    Field("tcp.ack", 13, "B", BOOL, bits=(4, 1)),
    Field("tcp.psh", 13, "B", BOOL, bits=(3, 1)),
    Field("tcp.rst", 13, "B", BOOL, bits=(2, 1)),
    Field("tcp.syn", 13, "B", BOOL, bits=(1, 1)),
    Field("tcp.fin", 13, "B", BOOL, bits=(0, 1)),
    Field("tcp.res1", 12, "B", BOOL, bits=(0, 0xF)),
    Field("tcp.res2", 13, "B", BOOL, bits=(6, 3)),
    Field("tcp.csum", 16, "H", U16),
))

UDP = Header("udp", (
    Field("udp.sport", 0, "H", U16, cim_name="src_port"),
    Field("udp.dport", 2, "H", U16, cim_name="dest_port"),
    Field("udp.len", 4, "H", U16),
    Field("udp.csum", 6, "H", U16),
))

SCTP = Header("sctp", (
    Field("sctp.sport", 0, "H", U16, cim_name="src_port"),
    Field("sctp.dport", 2, "H", U16, cim_name="dest_port"),
    Field("sctp.csum", 8, "I", U32),
))

#: Declared by ulogd's BASE, never given a value (spec 8.3 B3).
AHESP_KEYS = (Key("ahesp.spi", U32),)

decode_tcp = TCP.compile_layer()
decode_udp = UDP.compile_layer()
decode_sctp = SCTP.compile_layer()
