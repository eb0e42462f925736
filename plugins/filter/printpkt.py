"""PRINTPKT: one packet as ulogd's iptables-LOG-like text line (spec 5.2), key `print`.

Log parsers read these lines, so every quirk of ulogd 2.0.8 is kept (spec 8.3 P1, P2):
`TOS=` without `0x`, `MARK=0x..` whenever the mark is known, `INCOMPLETE` with no
trailing space, ICMP extras chosen by the *code* (so no `MTU=`, and `GATEWAY=` or
`PARAMETER=` only for codes 5 and 12), `GATEWAY=` from the host-order gateway (its
bytes reversed), a field whose key is absent printed as 0 where ulogd does not check.

The per-packet path is dictionary look-ups and one join: every branch (family,
protocol, ICMP code, TOS byte, fragment flags, TCP flags) is a table built at import.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from ulogpy.core.keys import STRING, KeyType, keys
from ulogpy.core.plugin import DataType, FilterPlugin

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

Parts = list[str]
Block = Callable[[Callable, Parts], None]

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
_ARP_OPS = {1: "REQUEST ", 2: "REPLY ", 10: "NAK "}


# -- layer 4 ---------------------------------------------------------------------------
def _tcp(get: Callable, out: Parts) -> None:
    out.append("PROTO=TCP ")
    sport = get("tcp.sport")
    if sport is None:
        out.append("INCOMPLETE")
        return
    out.append(
        f"SPT={sport} DPT={get('tcp.dport', 0)} SEQ={get('tcp.seq', 0)} "
        f"ACK={get('tcp.ackseq', 0)} WINDOW={get('tcp.window', 0)} "
    )
    for key, word in _TCP_FLAGS:
        if get(key):
            out.append(word)
    out.append(f"URGP={get('tcp.urgp', 0)} ")


def _udp(get: Callable, out: Parts) -> None:
    out.append("PROTO=UDP ")
    sport = get("udp.sport")
    if sport is None:
        out.append("INCOMPLETE")
        return
    out.append(f"SPT={sport} DPT={get('udp.dport', 0)} LEN={get('udp.len', 0)} ")


def _sctp(get: Callable, out: Parts) -> None:
    out.append("PROTO=SCTP ")
    sport = get("sctp.sport")
    if sport is None:
        out.append("INCOMPLETE")
        return
    out.append(f"SPT={sport} DPT={get('sctp.dport', 0)} ")


def _ahesp(get: Callable, out: Parts) -> None:
    # ulogd labels by ip.protocol (not by the header that led here); BASE never sets the SPI.
    out.append("PROTO=ESP " if get("ip.protocol", 0) == IPPROTO_ESP else "PROTO=AH ")
    spi = get("ahesp.spi")
    if spi is None:
        out.append("INCOMPLETE")
        return
    out.append(f"SPI=0x{spi:x} ")


_L4 = {IPPROTO_TCP: _tcp, IPPROTO_UDP: _udp, IPPROTO_SCTP: _sctp,
       IPPROTO_ESP: _ahesp, IPPROTO_AH: _ahesp}


# -- ICMP: the extra part is chosen by the code, as ulogd does ---------------------------
def _icmp_echo(get: Callable) -> str:
    return f"ID={get('icmp.echoid', 0)} SEQ={get('icmp.echoseq', 0)} "


def _icmp_parameter(get: Callable) -> str:
    # The top byte of the host-order word (the ICMP pointer); its last byte in memory.
    return f"PARAMETER={get('icmp.gateway', _NO_GATEWAY)[3]} "


def _icmp_gateway(get: Callable) -> str:
    return f"GATEWAY={socket.inet_ntoa(get('icmp.gateway', _NO_GATEWAY)[:4])} "


_ICMP_EXTRA_BY_CODE: dict[int, Callable[[Callable], str]] = {
    0: _icmp_echo, 8: _icmp_echo, 12: _icmp_parameter, 5: _icmp_gateway,
    # code 3 (dest. unreachable) would print MTU= only if the code were also 4: never.
}


def _icmp(get: Callable, out: Parts) -> None:
    out.append("PROTO=ICMP ")
    itype = get("icmp.type")
    if itype is None:
        out.append("INCOMPLETE")
        return
    code = get("icmp.code", 0)
    out.append(f"TYPE={itype} CODE={code} ")
    extra = _ICMP_EXTRA_BY_CODE.get(code)
    if extra is not None:
        out.append(extra(get))


def _icmpv6(get: Callable, out: Parts) -> None:
    out.append("PROTO=ICMPv6 ")
    itype = get("icmpv6.type")
    if itype is None:
        out.append("INCOMPLETE")
        return
    code = get("icmpv6.code")
    if code is None:
        out.append("TRUNCATED")
        return
    out.append(f"TYPE={itype} CODE={code} ")
    if itype in (128, 129):
        out.append(f"ID={get('icmpv6.echoid', 0)} SEQ={get('icmpv6.echoseq', 0)} ")


_IPV4_PROTO = {**_L4, IPPROTO_ICMP: _icmp}
_IPV6_PROTO = {**_L4, IPPROTO_ICMPV6: _icmpv6}


# -- network layer ---------------------------------------------------------------------
def _addresses(get: Callable, out: Parts, src_key: str, dst_key: str) -> None:
    """`SRC=` and `DST=`, each only when its address is known."""
    saddr = get(src_key)
    if saddr is not None:
        out.append(f"SRC={saddr} ")
    daddr = get(dst_key)
    if daddr is not None:
        out.append(f"DST={daddr} ")


def _ipv4(get: Callable, out: Parts) -> None:
    _addresses(get, out, "ip.saddr.str", "ip.daddr.str")
    out.append(f"LEN={get('ip.totlen', 0)} ")
    out.append(_TOS[get("ip.tos", 0) & 0xFF])
    out.append(f"TTL={get('ip.ttl', 0)} ID={get('ip.id', 0)} ")
    frag = get("ip.fragoff", 0)
    if frag:
        out.append(_FRAG_FLAGS[(frag >> 13) & 7])
        if frag & 0x1FFF:
            out.append(f"FRAG:{frag & 0x1FFF} ")
    proto = get("ip.protocol", 0)
    block = _IPV4_PROTO.get(proto)
    if block is None:
        out.append(f"PROTO={proto} ")
    else:
        block(get, out)


def _ipv6(get: Callable, out: Parts) -> None:
    _addresses(get, out, "ip.saddr.str", "ip.daddr.str")
    plen = get("ip6.payloadlen")
    if plen is not None:
        out.append(f"LEN={plen + IPV6_HEADER_LEN} ")
    for key, label in (("ip6.priority", "TC="), ("ip6.hoplimit", "HOPLIMIT="),
                       ("ip6.flowlabel", "FLOWLBL=")):
        value = get(key)
        if value is not None:
            out.append(f"{label}{value} ")
    fragoff = get("ip6.fragoff")
    fragid = get("ip6.fragid")
    if fragoff is not None and fragid is not None:
        out.append(f"FRAG: {fragoff} ID: {fragid:08x} ")
    nexthdr = get("ip6.nexthdr", 0)
    block = _IPV6_PROTO.get(nexthdr)
    if block is None:
        out.append(f"PROTO={nexthdr} ")
    else:
        block(get, out)


def _arp(get: Callable, out: Parts) -> None:
    _addresses(get, out, "arp.saddr.str", "arp.daddr.str")
    out.append("PROTO=ARP ")
    op = get("arp.operation")
    if op is None:
        return
    out.append(_ARP_OPS.get(op) or f"CODE={op} ")
    sha = get("arp.shwaddr")
    if op == 2 and sha is not None:
        out.append(f"REPLY_MAC={sha[:6].hex(':')} ")


_BRIDGE = {ETH_P_IP: _ipv4, ETH_P_IPV6: _ipv6, ETH_P_ARP: _arp}


def _bridge(get: Callable, out: Parts) -> None:
    proto = get("oob.protocol", 0)
    block = _BRIDGE.get(proto)
    if block is None:
        out.append(f"PROTO={proto} ")
    else:
        block(get, out)


_FAMILY: dict[int, Block] = {2: _ipv4, 10: _ipv6, 7: _bridge}


def format_packet(record: dict) -> str:
    """The PRINTPKT text of one record, newline included."""
    get = record.get
    out: Parts = []
    prefix = get("oob.prefix")
    if prefix is not None:
        out.append(f"{prefix} ")
    ifin = get("oob.in")
    ifout = get("oob.out")
    if ifin is not None and ifout is not None:
        out.append(f"IN={ifin} OUT={ifout} ")
    mac = get("raw.mac")
    if mac is None:
        out.append("MAC= ")
    else:
        # The header's bytes as xx:xx:..:xx and a space; nothing at all if its length is 0.
        maclen = get("raw.mac_len", 0)
        out.append(f"MAC={mac[:maclen].hex(':')} " if maclen else "MAC=")
    block = _FAMILY.get(get("oob.family", 0))
    if block is not None:
        block(get, out)
    uid = get("oob.uid")
    if uid is not None:
        out.append(f"UID={uid} ")
    gid = get("oob.gid")
    if gid is not None:
        out.append(f"GID={gid} ")
    mark = get("oob.mark")
    if mark is not None:
        out.append(f"MARK=0x{mark:x} ")
    out.append("\n")
    return "".join(out)


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
