"""XML's element text: flows, packets and sums as the netfilter libraries print them.

ulogd's XML output hands the kernel's own message to the XML printer of
libnetfilter_conntrack (flows), libnetfilter_log (packets) or libnetfilter_acct
(sums).  Those printers write one element per event, in a fixed order, from the
attributes the message carries: an attribute the kernel left out is an element
left out.  This module reads the same raw messages (the `ct` and `raw` keys
NFCT and NFLOG keep) and writes the same text, element for element:

* flow: ``<flow>``, the original and reply ``<meta>`` (layer 3 and 4, zone,
  counters), the independent ``<meta>`` (state, timeout, mark, secmark, zone,
  use, id, assured/unreplied, deltatime), ``<when>`` and the helper;
* packet: ``<log>`` with ``<when>``, prefix, hook, hardware header, mark,
  devices, physical devices and the payload in hex;
* sum: ``<obj>`` with the counter's name, its counts and the time.

``<when>`` is the local time of printing (both libraries call `time()`), not
the packet's time.  Strings (prefix, helper, counter name) are printed as they
are, without XML escaping, as the libraries do.  No code of those libraries is
used: the element layout was read from their output.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator

#: nlmsghdr + nfgenmsg in front of every nfnetlink message's attributes.
NFNL_HEADER = 20
_NLA = struct.Struct("=HH").unpack_from
_BE16 = struct.Struct("!H").unpack_from
_BE32 = struct.Struct("!I").unpack_from
_BE64 = struct.Struct("!Q").unpack_from
NLA_TYPE_MASK = 0x3FFF

# ctnetlink attributes (linux/netfilter/nfnetlink_conntrack.h)
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_STATUS, CTA_PROTOINFO, CTA_HELP = 1, 2, 3, 4, 5
CTA_TIMEOUT, CTA_MARK, CTA_COUNTERS_ORIG, CTA_COUNTERS_REPLY, CTA_USE = 7, 8, 9, 10, 11
CTA_ID, CTA_SECMARK, CTA_ZONE, CTA_SECCTX, CTA_TIMESTAMP = 12, 17, 18, 19, 20
CTA_TUPLE_IP, CTA_TUPLE_PROTO, CTA_TUPLE_ZONE = 1, 2, 3
CTA_IP_V4_SRC, CTA_IP_V4_DST, CTA_IP_V6_SRC, CTA_IP_V6_DST = 1, 2, 3, 4
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
CTA_PROTOINFO_TCP, CTA_PROTOINFO_DCCP, CTA_PROTOINFO_SCTP = 1, 2, 3
CTA_COUNTERS_PACKETS, CTA_COUNTERS_BYTES = 1, 2
CTA_COUNTERS32_PACKETS, CTA_COUNTERS32_BYTES = 3, 4
CTA_TIMESTAMP_START, CTA_TIMESTAMP_STOP = 1, 2
IPS_SEEN_REPLY, IPS_ASSURED = 0x2, 0x4

# nfnetlink_log attributes (linux/netfilter/nfnetlink_log.h)
NFULA_PACKET_HDR, NFULA_MARK, NFULA_IFINDEX_INDEV, NFULA_IFINDEX_OUTDEV = 1, 2, 4, 5
NFULA_IFINDEX_PHYSINDEV, NFULA_IFINDEX_PHYSOUTDEV, NFULA_HWADDR = 6, 7, 8
NFULA_PAYLOAD, NFULA_PREFIX = 9, 10

# nfnetlink_acct attributes (linux/netfilter/nfnetlink_acct.h)
NFACCT_NAME, NFACCT_PKTS, NFACCT_BYTES = 1, 2, 3

L3_NAMES = {socket.AF_INET: "ipv4", socket.AF_INET6: "ipv6"}
L4_NAMES = {6: "tcp", 17: "udp", 136: "udplite", 1: "icmp", 58: "icmpv6", 132: "sctp",
            47: "gre", 33: "dccp"}
#: Protocols whose tuple has ports (`<sport>`, `<dport>`); GRE's keys print in hex.
PORT_PROTOCOLS = frozenset({6, 17, 136, 132, 33})
IPPROTO_GRE = 47
#: The state names the conntrack printer uses for TCP -- and, as it does, for SCTP
#: and DCCP too; a number past the table prints as NONE.
STATE_NAMES = ("NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT",
               "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2")


def attributes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each netlink attribute in data[start:end]; a truncated one
    ends the walk, as the libraries' parsers stop there."""
    end = len(data) if end is None else end
    pos = start
    while pos + 4 <= end:
        length, kind = _NLA(data, pos)
        if length < 4 or pos + length > end:
            return
        yield kind & NLA_TYPE_MASK, data[pos + 4:pos + length]
        pos += (length + 3) & ~3


def table(data: bytes, start: int = 0) -> dict[int, bytes]:
    return dict(attributes(data, start))


def when(now: float | None = None) -> str:
    """``<when>``: the local time now, laid out as both libraries lay it out."""
    tm = time.localtime(now)
    # C's tm_wday counts from Sunday = 0, Python's tm_wday from Monday = 0.
    wday = (tm.tm_wday + 1) % 7 + 1
    return (f"<when><hour>{tm.tm_hour}</hour><min>{tm.tm_min:02d}</min>"
            f"<sec>{tm.tm_sec:02d}</sec><wday>{wday}</wday><day>{tm.tm_mday}</day>"
            f"<month>{tm.tm_mon}</month><year>{tm.tm_year}</year></when>")


# -- flows ------------------------------------------------------------------------------

def _u(value: bytes | None, unpack=_BE32) -> int:
    return unpack(value)[0] if value is not None else 0


def _tuple(family: int, attrs: dict[int, bytes], direction: int,
           counters: bytes | None, with_counters: bool) -> str:
    tup = table(attrs.get(direction, b""))
    ip = table(tup.get(CTA_TUPLE_IP, b""))
    proto = table(tup.get(CTA_TUPLE_PROTO, b""))
    protonum = proto[CTA_PROTO_NUM][0] if CTA_PROTO_NUM in proto else 0
    if family == socket.AF_INET:
        src = socket.inet_ntop(family, ip.get(CTA_IP_V4_SRC, bytes(4)))
        dst = socket.inet_ntop(family, ip.get(CTA_IP_V4_DST, bytes(4)))
    elif family == socket.AF_INET6:
        src = socket.inet_ntop(family, ip.get(CTA_IP_V6_SRC, bytes(16)))
        dst = socket.inet_ntop(family, ip.get(CTA_IP_V6_DST, bytes(16)))
    else:
        src = dst = ""
    name = "original" if direction == CTA_TUPLE_ORIG else "reply"
    parts = [f'<meta direction="{name}"><layer3 protonum="{family}" '
             f'protoname="{L3_NAMES.get(family, "unknown")}"><src>{src}</src><dst>{dst}</dst>'
             f'</layer3><layer4 protonum="{protonum}" '
             f'protoname="{L4_NAMES.get(protonum, "unknown")}">']
    sport = _u(proto.get(CTA_PROTO_SRC_PORT), _BE16)
    dport = _u(proto.get(CTA_PROTO_DST_PORT), _BE16)
    if protonum in PORT_PROTOCOLS:
        parts.append(f"<sport>{sport}</sport><dport>{dport}</dport>")
    elif protonum == IPPROTO_GRE:
        parts.append(f"<srckey>0x{sport:x}</srckey><dstkey>0x{dport:x}</dstkey>")
    parts.append("</layer4>")
    if CTA_TUPLE_ZONE in tup:
        parts.append(f"<zone>{_u(tup[CTA_TUPLE_ZONE], _BE16)}</zone>")
    if with_counters:  # the printer tests the original direction's counters for both
        packets, octets = _counter_values(counters)
        parts.append(f"<counters><packets>{packets}</packets><bytes>{octets}</bytes>"
                     "</counters>")
    parts.append("</meta>")
    return "".join(parts)


def _counter_values(blob: bytes | None) -> tuple[int, int]:
    if blob is None:
        return 0, 0
    found = table(blob)
    packets = found.get(CTA_COUNTERS_PACKETS)
    octets = found.get(CTA_COUNTERS_BYTES)
    p = _u(packets, _BE64) if packets is not None else _u(found.get(CTA_COUNTERS32_PACKETS))
    b = _u(octets, _BE64) if octets is not None else _u(found.get(CTA_COUNTERS32_BYTES))
    return p, b


def _has_counters(blob: bytes | None) -> bool:
    if blob is None:
        return False
    found = table(blob)
    return ((CTA_COUNTERS_PACKETS in found or CTA_COUNTERS32_PACKETS in found)
            and (CTA_COUNTERS_BYTES in found or CTA_COUNTERS32_BYTES in found))


def _nested_string(blob: bytes) -> str:
    first = table(blob).get(1, b"")
    return first.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


_INDEPENDENT = (CTA_PROTOINFO, CTA_TIMEOUT, CTA_MARK, CTA_SECMARK, CTA_ZONE, CTA_USE,
                CTA_STATUS, CTA_ID, CTA_TIMESTAMP)


def flow_from_attrs(family: int, data: bytes, start: int, now: float | None = None) -> str:
    """The ``<flow>`` element of the ctnetlink attributes at data[start:]."""
    attrs = table(data, start)
    with_counters = _has_counters(attrs.get(CTA_COUNTERS_ORIG))
    parts = ["<flow>",
             _tuple(family, attrs, CTA_TUPLE_ORIG, attrs.get(CTA_COUNTERS_ORIG), with_counters),
             _tuple(family, attrs, CTA_TUPLE_REPLY, attrs.get(CTA_COUNTERS_REPLY),
                    with_counters)]
    stamps = table(attrs.get(CTA_TIMESTAMP, b""))
    state = _state(attrs.get(CTA_PROTOINFO))
    independent = state is not None or any(
        kind in attrs for kind in _INDEPENDENT if kind not in (CTA_PROTOINFO, CTA_TIMESTAMP)
    ) or bool(stamps)
    if independent:
        parts.append('<meta direction="independent">')
    if state is not None:
        parts.append(f"<state>{state}</state>")
    for kind, tag, unpack in ((CTA_TIMEOUT, "timeout", _BE32), (CTA_MARK, "mark", _BE32),
                              (CTA_SECMARK, "secmark", _BE32)):
        if kind in attrs:
            parts.append(f"<{tag}>{_u(attrs[kind], unpack)}</{tag}>")
    if CTA_SECCTX in attrs:
        parts.append(f"<secctx>{_nested_string(attrs[CTA_SECCTX])}</secctx>")
    for kind, tag, unpack in ((CTA_ZONE, "zone", _BE16), (CTA_USE, "use", _BE32),
                              (CTA_ID, "id", _BE32)):
        if kind in attrs:
            parts.append(f"<{tag}>{_u(attrs[kind], unpack)}</{tag}>")
    if CTA_STATUS in attrs:
        status = _u(attrs[CTA_STATUS])
        if status & IPS_ASSURED:
            parts.append("<assured/>")
        if not status & IPS_SEEN_REPLY:
            parts.append("<unreplied/>")
    begin, end = stamps.get(CTA_TIMESTAMP_START), stamps.get(CTA_TIMESTAMP_STOP)
    if begin is not None and end is not None:
        delta = (_u(end, _BE64) - _u(begin, _BE64)) // 1_000_000_000
        parts.append(f"<deltatime>{delta % (1 << 64)}</deltatime>")
    elif begin is not None:
        clock = time.time() if now is None else now
        delta = int(clock) - _u(begin, _BE64) // 1_000_000_000
        parts.append(f"<deltatime>{delta % (1 << 64)}</deltatime>")
    if independent:
        parts.append("</meta>")
    parts.append(when(now))
    if CTA_HELP in attrs:
        parts.append(f"<helper>{_nested_string(attrs[CTA_HELP])}</helper>")
    parts.append("</flow>")
    return "".join(parts)


def _state(protoinfo: bytes | None) -> str | None:
    if protoinfo is None:
        return None
    for kind, blob in attributes(protoinfo):
        if kind in (CTA_PROTOINFO_TCP, CTA_PROTOINFO_DCCP, CTA_PROTOINFO_SCTP):
            value = table(blob).get(1)  # CTA_PROTOINFO_*_STATE
            if value:
                number = value[0]
                return STATE_NAMES[number] if number < len(STATE_NAMES) else STATE_NAMES[0]
    return None


def flow(message: bytes, now: float | None = None) -> str:
    """The ``<flow>`` element of one ctnetlink message (nlmsghdr included), NFCT's `ct`."""
    if len(message) < NFNL_HEADER:
        raise ValueError("conntrack message shorter than its headers")
    return flow_from_attrs(message[16], message, NFNL_HEADER, now)


# -- packets ----------------------------------------------------------------------------

def packet(message: bytes, now: float | None = None) -> str:
    """The ``<log>`` element of one nfnetlink_log packet message, NFLOG's `raw`."""
    if len(message) < NFNL_HEADER:
        raise ValueError("nflog message shorter than its headers")
    attrs = table(message, NFNL_HEADER)
    parts = ["<log>", when(now)]
    if NFULA_PREFIX in attrs:
        prefix = attrs[NFULA_PREFIX].split(b"\0", 1)[0]
        parts.append(f"<prefix>{prefix.decode('utf-8', 'surrogateescape')}</prefix>")
    header = attrs.get(NFULA_PACKET_HDR)
    if header is not None and len(header) >= 3:
        hw_protocol = _BE16(header)[0]
        parts.append(f"<hook>{header[2]}</hook><hw><proto>{hw_protocol:04x}</proto>")
        hwaddr = attrs.get(NFULA_HWADDR)
        if hwaddr is not None and len(hwaddr) >= 4:
            length = min(_BE16(hwaddr)[0], len(hwaddr) - 4)
            parts.append(f"<src>{hwaddr[4:4 + length].hex()}</src>")
        parts.append("</hw>")
    for kind, tag in ((NFULA_MARK, "mark"), (NFULA_IFINDEX_INDEV, "indev"),
                      (NFULA_IFINDEX_OUTDEV, "outdev"), (NFULA_IFINDEX_PHYSINDEV, "physindev"),
                      (NFULA_IFINDEX_PHYSOUTDEV, "physoutdev")):
        value = _u(attrs.get(kind))
        if value:
            parts.append(f"<{tag}>{value}</{tag}>")
    if NFULA_PAYLOAD in attrs:
        parts.append(f"<payload>{attrs[NFULA_PAYLOAD].hex()}</payload>")
    parts.append("</log>")
    return "".join(parts)


# -- sums -------------------------------------------------------------------------------

def total(message: bytes, now: float | None = None) -> str:
    """The ``<obj>`` element of one nfnetlink_acct object message (NFACCT's `sum`).

    As libnetfilter_acct prints it: both counts as 20 digits, and the time
    elements without a ``<when>`` around them.
    """
    if len(message) < NFNL_HEADER:
        raise ValueError("nfacct message shorter than its headers")
    attrs = table(message, NFNL_HEADER)
    name = attrs.get(NFACCT_NAME, b"").split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    packets, octets = _u(attrs.get(NFACCT_PKTS), _BE64), _u(attrs.get(NFACCT_BYTES), _BE64)
    stamp = when(now)[len("<when>"):-len("</when>")]
    return (f"<obj><name>{name}</name><pkts>{packets:020}</pkts><bytes>{octets:020}</bytes>"
            f"{stamp}</obj>")
