"""PRINTPKT: one packet as ulogd's iptables-LOG-like text line (spec 5.2), key `print`.

Log parsers read these lines, so every quirk of ulogd 2.0.8 is kept (spec 8.3 P1, P2):
`TOS=` without `0x`, `MARK=0x..` whenever the mark is known, `INCOMPLETE` with no
trailing space, ICMP extras chosen by the *code* (so no `MTU=`, and `GATEWAY=` or
`PARAMETER=` only for codes 5 and 12), `GATEWAY=` from the host-order gateway (its
bytes reversed), a field whose key is absent printed as 0 where ulogd does not check.

The line is one layout table (`LAYOUT`, see `ulogpy.render.textline`): every branch
(family, protocol, ICMP code, TCP flags) is a switch or a test on a key, the TOS byte
a pick from ready texts.  The compiled extension walks it where it is built, else a
function generated from it does; the few pieces that are no table (the MAC text, the
fragment flags, ICMP's gateway and parameter, IPv6's length) are small functions the
layout calls.
"""

from __future__ import annotations

import socket

from ulogpy.core.keys import STRING, KeyType, keys
from ulogpy.core.plugin import DataType, FilterPlugin
from ulogpy.render.textline import Step, call, field, pick, present, switch, text, text_line, when

_INPUTS = (
    "oob.family", "oob.prefix", "oob.in", "oob.out", "oob.uid", "oob.gid", "oob.mark",
    "raw.mac", "raw.mac_len", "ip.saddr.str", "ip.daddr.str", "ip.totlen", "ip.tos", "ip.ttl",
    "ip.id", "ip.fragoff", "ip.protocol", "ip6.payloadlen", "ip6.priority", "ip6.hoplimit",
    "ip6.flowlabel", "ip6.nexthdr", "ip6.fragoff", "ip6.fragid", "tcp.sport", "tcp.dport",
    "tcp.seq", "tcp.ackseq", "tcp.window", "tcp.syn", "tcp.ack", "tcp.psh", "tcp.rst",
    "tcp.fin", "tcp.urg", "tcp.urgp", "udp.sport", "udp.dport", "udp.len", "icmp.type",
    "icmp.code", "icmp.echoid", "icmp.echoseq", "icmp.gateway", "icmp.fragmtu", "icmpv6.type",
    "icmpv6.code", "icmpv6.echoid", "icmpv6.echoseq", "ahesp.spi", "oob.protocol",
    "arp.hwtype", "arp.protocoltype", "arp.operation", "arp.shwaddr", "arp.saddr.str",
    "arp.dhwaddr", "arp.daddr.str", "sctp.sport", "sctp.dport",
)
_OPTIONAL = frozenset({"oob.uid", "oob.gid"})

IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP = 1, 6, 17
IPPROTO_ESP, IPPROTO_AH, IPPROTO_ICMPV6, IPPROTO_SCTP = 50, 51, 58, 132
ETH_P_IP, ETH_P_ARP, ETH_P_IPV6 = 0x0800, 0x0806, 0x86DD
IPV6_HEADER_LEN = 40

# "TOS=<tos & 0x1E, 2 upper hex> PREC=0x<tos & 0xE0, 2 upper hex> " for every byte.
_TOS = tuple(f"TOS={t & 0x1E:02X} PREC=0x{t & 0xE0:02X} " for t in range(256))
# Flag words from the top 3 bits of the IPv4 fragment field (CE is the reserved bit).
_FRAG_FLAGS = tuple(
    ("CE " if f & 4 else "") + ("DF " if f & 2 else "") + ("MF " if f & 1 else "")
    for f in range(8)
)
_TCP_FLAGS = (("tcp.urg", "URG "), ("tcp.ack", "ACK "), ("tcp.psh", "PSH "),
              ("tcp.rst", "RST "), ("tcp.syn", "SYN "), ("tcp.fin", "FIN "))
_NO_GATEWAY = bytes(4)


# -- the pieces that are no table: called from the layout ------------------------------
def _mac(record: dict) -> str:
    """The header's bytes as xx:xx:..:xx and a space; nothing at all if its length is 0."""
    maclen = record.get("raw.mac_len", 0)
    return f"MAC={record['raw.mac'][:maclen].hex(':')} " if maclen else "MAC="


def _fragment(record: dict) -> str:
    frag = record["ip.fragoff"]
    flags = _FRAG_FLAGS[(frag >> 13) & 7]
    offset = frag & 0x1FFF
    return flags + (f"FRAG:{offset} " if offset else "")


def _icmp_parameter(record: dict) -> str:
    # The top byte of the host-order word (the ICMP pointer); its last byte in memory.
    return f"PARAMETER={record.get('icmp.gateway', _NO_GATEWAY)[3]} "


def _icmp_gateway(record: dict) -> str:
    return f"GATEWAY={socket.inet_ntoa(record.get('icmp.gateway', _NO_GATEWAY)[:4])} "


def _ipv6_length(record: dict) -> str:
    return f"LEN={record['ip6.payloadlen'] + IPV6_HEADER_LEN} "


def _reply_mac(record: dict) -> str:
    sha = record.get("arp.shwaddr")
    return "" if sha is None else f"REPLY_MAC={sha[:6].hex(':')} "


def _ports(proto: str, *more: Step) -> Step:
    """`SPT=` and `DPT=` (absent ones as 0) and `more`, or INCOMPLETE without a source port."""
    return present((f"{proto}.sport",), (
        field(f"{proto}.sport", "SPT="), field(f"{proto}.dport", "DPT=", default=0), *more,
    ), (text("INCOMPLETE"),))


# -- layer 4 ---------------------------------------------------------------------------
_TCP = (text("PROTO=TCP "), _ports(
    "tcp",
    field("tcp.seq", "SEQ=", default=0), field("tcp.ackseq", "ACK=", default=0),
    field("tcp.window", "WINDOW=", default=0),
    *(when(key, (text(word),)) for key, word in _TCP_FLAGS),
    field("tcp.urgp", "URGP=", default=0),
))
_UDP = (text("PROTO=UDP "), _ports("udp", field("udp.len", "LEN=", default=0)))
_SCTP = (text("PROTO=SCTP "), _ports("sctp"))
# ulogd labels by ip.protocol (not by the header that led here); BASE never sets the SPI.
_AHESP = (
    switch("ip.protocol", {IPPROTO_ESP: (text("PROTO=ESP "),)}, (text("PROTO=AH "),), default=0),
    present(("ahesp.spi",), (field("ahesp.spi", "SPI=0x", spec="x"),), (text("INCOMPLETE"),)),
)
_L4 = {IPPROTO_TCP: _TCP, IPPROTO_UDP: _UDP, IPPROTO_SCTP: _SCTP,
       IPPROTO_ESP: _AHESP, IPPROTO_AH: _AHESP}

# ICMP: the extra part is chosen by the *code*, as ulogd does (code 3, destination
# unreachable, would print MTU= only if the code were also 4: never).
_ICMP_ECHO = (field("icmp.echoid", "ID=", default=0), field("icmp.echoseq", "SEQ=", default=0))
_ICMP = (text("PROTO=ICMP "), present(("icmp.type",), (
    field("icmp.type", "TYPE="), field("icmp.code", "CODE=", default=0),
    switch("icmp.code", {0: _ICMP_ECHO, 8: _ICMP_ECHO, 12: (call(_icmp_parameter),),
                         5: (call(_icmp_gateway),)}, default=0),
), (text("INCOMPLETE"),)))
_ICMPV6_ECHO = (field("icmpv6.echoid", "ID=", default=0),
                field("icmpv6.echoseq", "SEQ=", default=0))
_ICMPV6 = (text("PROTO=ICMPv6 "), present(("icmpv6.type",), (
    present(("icmpv6.code",), (
        field("icmpv6.type", "TYPE="), field("icmpv6.code", "CODE="),
        switch("icmpv6.type", {128: _ICMPV6_ECHO, 129: _ICMPV6_ECHO}),
    ), (text("TRUNCATED"),)),
), (text("INCOMPLETE"),)))


# -- network layer ---------------------------------------------------------------------
def _addresses(prefix: str) -> tuple[Step, Step]:
    """`SRC=` and `DST=`, each only when its address is known."""
    return field(f"{prefix}.saddr.str", "SRC="), field(f"{prefix}.daddr.str", "DST=")


def _protocol(key: str, blocks: dict) -> Step:
    """The block of the protocol in `key` (absent: 0), else `PROTO=<number> `."""
    return switch(key, blocks, (field(key, "PROTO=", default=0),), default=0)


_IPV4 = (
    *_addresses("ip"), field("ip.totlen", "LEN=", default=0), pick("ip.tos", _TOS),
    field("ip.ttl", "TTL=", default=0), field("ip.id", "ID=", default=0),
    when("ip.fragoff", (call(_fragment),)),
    _protocol("ip.protocol", {**_L4, IPPROTO_ICMP: _ICMP}),
)
_IPV6 = (
    *_addresses("ip"), present(("ip6.payloadlen",), (call(_ipv6_length),)),
    field("ip6.priority", "TC="), field("ip6.hoplimit", "HOPLIMIT="),
    field("ip6.flowlabel", "FLOWLBL="),
    present(("ip6.fragoff", "ip6.fragid"), (
        field("ip6.fragoff", "FRAG: "), field("ip6.fragid", "ID: ", spec="08x"),
    )),
    _protocol("ip6.nexthdr", {**_L4, IPPROTO_ICMPV6: _ICMPV6}),
)
_ARP = (
    *_addresses("arp"), text("PROTO=ARP "),
    switch("arp.operation", {
        1: (text("REQUEST "),), 2: (text("REPLY "), call(_reply_mac)), 10: (text("NAK "),),
        None: (),
    }, (field("arp.operation", "CODE="),)),
)

#: The whole line, one table for the compiled and the pure way (`ulogpy.render.textline`).
LAYOUT = (
    field("oob.prefix", ""),
    present(("oob.in", "oob.out"), (field("oob.in", "IN="), field("oob.out", "OUT="))),
    present(("raw.mac",), (call(_mac),), (text("MAC= "),)),
    switch("oob.family", {
        2: _IPV4, 10: _IPV6,
        7: (_protocol("oob.protocol", {ETH_P_IP: _IPV4, ETH_P_IPV6: _IPV6, ETH_P_ARP: _ARP}),),
    }, default=0),
    field("oob.uid", "UID="), field("oob.gid", "GID="), field("oob.mark", "MARK=0x", spec="x"),
    text("\n"),
)
#: The PRINTPKT text of one record, newline included (the compiled line where it is built).
format_packet = text_line(LAYOUT, "PRINTPKT line")


class PRINTPKT(FilterPlugin):
    name = "PRINTPKT"
    description = "Format a packet as ulogd's iptables-LOG-like text line"
    input_type = DataType.PACKET
    output_type = DataType.PACKET
    # ulogd declares these inputs without a type; `-i` prints "Unknown type".
    input_keys = keys(*((name, KeyType.NONE, name in _OPTIONAL) for name in _INPUTS))
    output_keys = keys(("print", STRING))

    def interp(self, record: dict) -> bool | None:
        record["print"] = format_packet(record)
        return None
