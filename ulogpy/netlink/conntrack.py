"""ctnetlink codec: conntrack event/dump messages to ulogd NFCT keys.

This is the per-event hot path.  The message layout is declared once in the
tables below (numbers checked against the kernel UAPI header
``linux/netfilter/nfnetlink_conntrack.h``, plus CTA_TIMESTAMP_EVENT which is
newer than Debian's 6.1 header); `decode_ct` runs the walker of
`ulogpy.netlink.attrs` over them straight into a dict that already uses
ulogd's key names, then applies ulogd's validity rules (spec §4.2) and moves
the fields that are not ulogd keys (timestamps, zone, status, ICMP id) onto
the `CtEvent`.  Tuples, counters and timestamps also declare the shapes the
kernel sends them in, so each is decoded with one struct call; other shapes
take the generic loop with the same result.

Error contract: `decode_ct` raises `MalformedMessage` (from
`ulogpy.netlink.attrs`) for broken bytes and nothing else; it returns None for
well-formed messages that are not conntrack entries (other nfnetlink
subsystems, expectations, statistics, netlink control messages).
"""

from __future__ import annotations

import struct
from typing import Any

from ulogpy import fastpath
from ulogpy.core.codegen import define
from ulogpy.netlink.attrs import (
    MalformedMessage,
    Table,
    attr,
    be16,
    be32,
    be64,
    is_compiled,
    message_length,
    message_shape,
    nested,
    nested_raw,
    raw_bytes,
    skip,
    table_walker,
    u8,
)
from ulogpy.netlink.nlsock import NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NLMSGHDR
from ulogpy.netlink.shapes import ShapeCache

__all__ = [
    "CtDecoder",
    "CtEvent",
    "MalformedMessage",
    "decode_ct",
    "build_dump_request",
    "build_ctrzero_request",
    "build_destroy_message",
]

# nfnetlink
NFNL_SUBSYS_CTNETLINK = 1
NFNETLINK_V0 = 0
NFGENMSG = struct.Struct("!BBH")  # family, version, res_id (big endian)

# Multicast groups (nl_groups bitmask form, = ulogd event_mask bits).
NF_NETLINK_CONNTRACK_NEW = 0x1
NF_NETLINK_CONNTRACK_UPDATE = 0x2
NF_NETLINK_CONNTRACK_DESTROY = 0x4

# enum cntl_msg_types
IPCTNL_MSG_CT_NEW = 0
IPCTNL_MSG_CT_GET = 1
IPCTNL_MSG_CT_DELETE = 2
IPCTNL_MSG_CT_GET_CTRZERO = 3

# ulogd's ct.event values
EVENT_NEW = 1
EVENT_UPDATE = 2
EVENT_DESTROY = 4

# enum ctattr_type
CTA_TUPLE_ORIG = 1
CTA_TUPLE_REPLY = 2
CTA_STATUS = 3
CTA_PROTOINFO = 4
CTA_HELP = 5
CTA_NAT_SRC = 6
CTA_TIMEOUT = 7
CTA_MARK = 8
CTA_COUNTERS_ORIG = 9
CTA_COUNTERS_REPLY = 10
CTA_USE = 11
CTA_ID = 12
CTA_NAT_DST = 13
CTA_TUPLE_MASTER = 14
CTA_SEQ_ADJ_ORIG = 15
CTA_SEQ_ADJ_REPLY = 16
CTA_SECMARK = 17
CTA_ZONE = 18
CTA_SECCTX = 19
CTA_TIMESTAMP = 20
CTA_MARK_MASK = 21
CTA_LABELS = 22
CTA_LABELS_MASK = 23
CTA_SYNPROXY = 24
CTA_FILTER = 25
CTA_STATUS_MASK = 26
# Kernel >= 6.14, newer than some installed UAPI headers: be64 ns since the
# epoch when the event was generated; sent only with nf_conntrack_timestamp=1.
CTA_TIMESTAMP_EVENT = 27

# enum ctattr_tuple
CTA_TUPLE_IP = 1
CTA_TUPLE_PROTO = 2
CTA_TUPLE_ZONE = 3

# enum ctattr_ip
CTA_IP_V4_SRC = 1
CTA_IP_V4_DST = 2
CTA_IP_V6_SRC = 3
CTA_IP_V6_DST = 4

# enum ctattr_l4proto
CTA_PROTO_NUM = 1
CTA_PROTO_SRC_PORT = 2
CTA_PROTO_DST_PORT = 3
CTA_PROTO_ICMP_ID = 4
CTA_PROTO_ICMP_TYPE = 5
CTA_PROTO_ICMP_CODE = 6
CTA_PROTO_ICMPV6_ID = 7
CTA_PROTO_ICMPV6_TYPE = 8
CTA_PROTO_ICMPV6_CODE = 9

# enum ctattr_counters
CTA_COUNTERS_PACKETS = 1
CTA_COUNTERS_BYTES = 2
CTA_COUNTERS32_PACKETS = 3
CTA_COUNTERS32_BYTES = 4

# enum ctattr_tstamp
CTA_TIMESTAMP_START = 1
CTA_TIMESTAMP_STOP = 2

# Layer-4 protocols whose tuple carries ports that ulogd exports.
PORT_PROTOCOLS = frozenset({6, 17, 136, 132, 33})  # TCP UDP UDPLITE SCTP DCCP
IPPROTO_ICMP = 1

# Names of walker outputs that are not ulogd keys; moved onto CtEvent.
_X_ORIG = "_orig"
_X_REPLY = "_reply"
_X_STATUS = "_status"
_X_ZONE = "_zone"
_X_ICMP_ID = "_icmp.id"
_X_ICMPV6_TYPE = "_icmpv6.type"
_X_ICMPV6_CODE = "_icmpv6.code"
_X_START = "_ts.start"
_X_STOP = "_ts.stop"
_X_EVENT_TS = "_ts.event"


def _tuple_table(d: str) -> Table:
    """The CTA_TUPLE_* layout for direction `d` ("orig" or "reply")."""
    ip: Table = {
        CTA_IP_V4_SRC: raw_bytes(f"{d}.ip.saddr", 4),
        CTA_IP_V4_DST: raw_bytes(f"{d}.ip.daddr", 4),
        CTA_IP_V6_SRC: raw_bytes(f"{d}.ip.saddr", 16),
        CTA_IP_V6_DST: raw_bytes(f"{d}.ip.daddr", 16),
    }
    proto: Table = {
        CTA_PROTO_NUM: u8(f"{d}.ip.protocol"),
        CTA_PROTO_SRC_PORT: be16(f"{d}.l4.sport"),
        CTA_PROTO_DST_PORT: be16(f"{d}.l4.dport"),
    }
    if d == "orig":
        # ulogd reports ICMP type/code of the original direction only.
        proto[CTA_PROTO_ICMP_ID] = be16(_X_ICMP_ID)
        proto[CTA_PROTO_ICMP_TYPE] = u8("icmp.type")
        proto[CTA_PROTO_ICMP_CODE] = u8("icmp.code")
        proto[CTA_PROTO_ICMPV6_ID] = be16(_X_ICMP_ID)
        proto[CTA_PROTO_ICMPV6_TYPE] = u8(_X_ICMPV6_TYPE)
        proto[CTA_PROTO_ICMPV6_CODE] = u8(_X_ICMPV6_CODE)
    else:
        for id_, type_, code in (
            (CTA_PROTO_ICMP_ID, CTA_PROTO_ICMP_TYPE, CTA_PROTO_ICMP_CODE),
            (CTA_PROTO_ICMPV6_ID, CTA_PROTO_ICMPV6_TYPE, CTA_PROTO_ICMPV6_CODE),
        ):
            proto[id_], proto[type_], proto[code] = skip(2), skip(1), skip(1)
    return {CTA_TUPLE_IP: nested(ip), CTA_TUPLE_PROTO: nested(proto)}


# The shapes the kernel sends tuples in (checked against recorded messages):
# address nest, then protocol number followed by that protocol's fields.
_TUPLE_LAYOUTS = [
    ((CTA_TUPLE_IP, ip), (CTA_TUPLE_PROTO, (CTA_PROTO_NUM, *l4)))
    for ip in ((CTA_IP_V4_SRC, CTA_IP_V4_DST), (CTA_IP_V6_SRC, CTA_IP_V6_DST))
    for l4 in (
        (CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT),  # TCP, UDP, UDPLITE, SCTP, DCCP, GRE
        (CTA_PROTO_ICMP_ID, CTA_PROTO_ICMP_TYPE, CTA_PROTO_ICMP_CODE),
        (CTA_PROTO_ICMPV6_ID, CTA_PROTO_ICMPV6_TYPE, CTA_PROTO_ICMPV6_CODE),
        (),  # generic tracker: protocol number only
    )
]


def _counters_table(d: str) -> Table:
    return {
        CTA_COUNTERS_PACKETS: be64(f"{d}.raw.pktcount"),
        CTA_COUNTERS_BYTES: be64(f"{d}.raw.pktlen"),
        CTA_COUNTERS32_PACKETS: be32(f"{d}.raw.pktcount"),
        CTA_COUNTERS32_BYTES: be32(f"{d}.raw.pktlen"),
    }


_COUNTERS_LAYOUTS = [(CTA_COUNTERS_PACKETS, CTA_COUNTERS_BYTES)]
_TIMESTAMP_TABLE: Table = {CTA_TIMESTAMP_START: be64(_X_START), CTA_TIMESTAMP_STOP: be64(_X_STOP)}
_TIMESTAMP_LAYOUTS = [(CTA_TIMESTAMP_START,), (CTA_TIMESTAMP_START, CTA_TIMESTAMP_STOP)]

CT_TABLE: Table = {
    CTA_TUPLE_ORIG: nested_raw(_X_ORIG, _tuple_table("orig"), _TUPLE_LAYOUTS),
    CTA_TUPLE_REPLY: nested_raw(_X_REPLY, _tuple_table("reply"), _TUPLE_LAYOUTS),
    CTA_STATUS: be32(_X_STATUS),
    CTA_MARK: be32("ct.mark"),
    CTA_COUNTERS_ORIG: nested(_counters_table("orig"), _COUNTERS_LAYOUTS),
    CTA_COUNTERS_REPLY: nested(_counters_table("reply"), _COUNTERS_LAYOUTS),
    CTA_ID: be32("ct.id"),
    CTA_ZONE: be16(_X_ZONE),
    CTA_TIMESTAMP: nested(_TIMESTAMP_TABLE, _TIMESTAMP_LAYOUTS),
    CTA_TIMESTAMP_EVENT: be64(_X_EVENT_TS),
}

# Keys ulogd marks valid for every conntrack, whatever the message carried.
_ALWAYS: dict[str, Any] = {
    "orig.ip.protocol": 0,
    "reply.ip.protocol": 0,
    "orig.raw.pktlen": 0,
    "orig.raw.pktcount": 0,
    "reply.raw.pktlen": 0,
    "reply.raw.pktcount": 0,
    "ct.mark": 0,
    "ct.id": 0,
    "oob.protocol": 0,
}

#: CtEvent fields taken from walker outputs that are not ulogd keys, with their defaults.
_EXTRAS = (
    ("start_ns", _X_START, None), ("stop_ns", _X_STOP, None), ("event_ns", _X_EVENT_TS, None),
    ("zone", _X_ZONE, 0), ("status", _X_STATUS, None), ("icmp_id", _X_ICMP_ID, None),
    ("icmpv6_type", _X_ICMPV6_TYPE, None), ("icmpv6_code", _X_ICMPV6_CODE, None),
)
#: What the walker's `split` takes out of the record: both tuples' bytes, then `_EXTRAS`.
_SPLIT = ((_X_ORIG, b""), (_X_REPLY, b""), *((name, default) for _a, name, default in _EXTRAS))
_ADDRESSES = ("orig.ip.saddr", "orig.ip.daddr", "reply.ip.saddr", "reply.ip.daddr")
#: ulogd's validity rules (spec 4.2): ports only for protocols that have them, ICMP type and
#: code only for ICMP, addresses only for IPv4 and IPv6 (keys that are always present).
_VALIDITY = (
    ("orig.ip.protocol", PORT_PROTOCOLS, ("orig.l4.sport", "orig.l4.dport")),
    ("orig.ip.protocol", frozenset({IPPROTO_ICMP}), ("icmp.type", "icmp.code")),
    ("reply.ip.protocol", PORT_PROTOCOLS, ("reply.l4.sport", "reply.l4.dport")),
    ("oob.family", frozenset({2, 10}), _ADDRESSES),
)

_NLHDR = NLMSGHDR.unpack_from
_ZONE = struct.Struct("!H").pack
_BE32 = struct.Struct("!I").pack
_MIN_LEN = NLMSGHDR.size + NFGENMSG.size
_CREATE_OR_EXCL = NLM_F_CREATE | NLM_F_EXCL
_CT_NEW = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW
_CT_DELETE = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE


class CtEvent:
    """One decoded conntrack message.

    `event`: 1 NEW, 2 UPDATE (also every dump reply), 4 DESTROY.
    `msg_type` / `flags`: the raw ctnetlink message type (0 CT_NEW, 2 CT_DELETE)
    and nlmsg flags, to tell a dump reply (NLM_F_MULTI) from an UPDATE event.
    `values`: ulogd output keys (absent = invalid); no `ct.event`, no `flow.*`.
    `start_ns` / `stop_ns`: CTA_TIMESTAMP in ns since the epoch, or None.
    `event_ns`: CTA_TIMESTAMP_EVENT (kernel >= 6.14), or None.
    `tuple_key`: bytes identifying the connection (orig + reply tuple
    attributes as sent, plus the zone when non-default).
    `zone`: CTA_ZONE (0 = default), `status`: IPS_* bits (None if absent),
    `icmp_id`, `icmpv6_type`, `icmpv6_code`: original direction, or None.
    """

    __slots__ = (
        "event",
        "msg_type",
        "flags",
        "family",
        "values",
        "start_ns",
        "stop_ns",
        "event_ns",
        "tuple_key",
        "zone",
        "status",
        "icmp_id",
        "icmpv6_type",
        "icmpv6_code",
    )

    def __init__(
        self,
        event: int,
        msg_type: int,
        flags: int,
        family: int,
        values: dict[str, Any],
        start_ns: int | None,
        stop_ns: int | None,
        event_ns: int | None,
        tuple_key: bytes,
        zone: int,
        status: int | None,
        icmp_id: int | None,
        icmpv6_type: int | None,
        icmpv6_code: int | None,
    ) -> None:
        self.event = event
        self.msg_type = msg_type
        self.flags = flags
        self.family = family
        self.values = values
        self.start_ns = start_ns
        self.stop_ns = stop_ns
        self.event_ns = event_ns
        self.tuple_key = tuple_key
        self.zone = zone
        self.status = status
        self.icmp_id = icmp_id
        self.icmpv6_type = icmpv6_type
        self.icmpv6_code = icmpv6_code

    def __repr__(self) -> str:
        return (
            f"CtEvent(event={self.event}, family={self.family}, zone={self.zone}, "
            f"start_ns={self.start_ns}, stop_ns={self.stop_ns}, values={self.values!r})"
        )


#: The message types decoded: type -> (flags mask, event if a flag of it is set, event
#: otherwise).  A CT_NEW with NLM_F_CREATE or NLM_F_EXCL is a NEW, else an UPDATE.
_KINDS = {
    _CT_NEW: (_CREATE_OR_EXCL, EVENT_NEW, EVENT_UPDATE),
    _CT_DELETE: (0, EVENT_DESTROY, EVENT_DESTROY),
}
#: The `CtEvent` slots the compiled decode sets, in its order: the header's, the record,
#: the tuple key, then the walker's extras after the two tuples (`_SPLIT`).
_EVENT_FIELDS = ("event", "msg_type", "flags", "family", "values", "tuple_key",
                 *(name for name, _x, _d in _EXTRAS))


class CtDecoder(ShapeCache):
    """Decodes ctnetlink messages, learning the shapes of those it decodes (see "shapes").

    Why an object: the learnt shapes are state, so each owner (an NFCT instance, a
    test, a tool) keeps its own and no one fills or resets another's.  `decode_ct`
    and `reset_shapes` work on `default_decoder`, shared by the process.
    """

    __slots__ = ("walk", "decode")

    def __init__(self, learn: bool = True, compiled: bool = True) -> None:
        #: The `attrs.Walker` of `CT_TABLE` and ulogd's rules: compiled where it is built.
        self.walk = table_walker(CT_TABLE, compiled, _SPLIT, _VALIDITY)
        # The compiled walker beats a learnt shape (0.8 against 3 us per message on the
        # recorded fixtures): with it, nothing is learnt.
        super().__init__(learn and not is_compiled(self.walk))
        #: ``decode(buf, offset=0, length=None)``: `_decode`, or with the compiled walker
        #: its compiled twin `_fastpath.CtDecode` (the same tables; `_decode` for any
        #: buffer that is not `bytes`), which saves the Python around the walk.
        self.decode = self._decode
        if is_compiled(self.walk) and fastpath.compiled is not None:
            self.decode = fastpath.compiled.CtDecode(
                self.walk, _KINDS, _ALWAYS, "oob.family", CtEvent, _EVENT_FIELDS,
                2 + [name for name, _x, _d in _EXTRAS].index("zone"), self._decode,
                MalformedMessage)

    def _decode(
        self, buf: bytes | bytearray | memoryview, offset: int = 0, length: int | None = None
    ) -> CtEvent | None:
        """Decode the ctnetlink message at ``buf[offset:offset+length]``.

        `length` bounds the message (default: to the end of `buf`); the message's
        own nlmsg_len must fit inside it.  Nothing outside that range is read.
        Returns None for messages that are not conntrack NEW/DELETE (see module
        docstring); raises `MalformedMessage` for broken framing.
        """
        length = message_length(len(buf), offset, length)
        if type(buf) is not bytes:
            # Work on an immutable copy of just this message: slices are then bytes.
            buf = bytes(buf[offset : offset + length])
            offset = 0
        if length < _MIN_LEN:
            raise MalformedMessage("message shorter than nlmsghdr + nfgenmsg")
        mlen, mtype, mflags, _seq, _pid = _NLHDR(buf, offset)
        if mlen < _MIN_LEN or mlen > length:
            raise MalformedMessage(f"bad nlmsg_len {mlen}")
        kind = _KINDS.get(mtype)
        if kind is None:
            return None
        event = kind[1] if mflags & kind[0] else kind[2]
        family = buf[offset + 16]
        shapes = self.shapes and self.shapes.get(mlen << 8 | family)
        if shapes:
            img = int.from_bytes(buf[offset + _MIN_LEN : offset + mlen], "little")
            for mask, image, fill in shapes:
                if img & mask == image:
                    return fill(buf, offset + _MIN_LEN, event, mtype & 0xFF, mflags)
        # The generic way: the table walker, then ulogd's validity rules (`_VALIDITY`),
        # written out here (one call less per event).
        v = _ALWAYS.copy()
        v["oob.family"] = family
        orig, reply, start, stop, evts, zone, status, icmp_id, t6, c6 = self.walk.split(
            buf, offset + _MIN_LEN, offset + mlen, v)
        ev = CtEvent(event, mtype & 0xFF, mflags, family, v, start, stop, evts,
                     orig + reply + _ZONE(zone) if zone else orig + reply, zone, status,
                     icmp_id, t6, c6)
        if self.attempts > 0:
            self._learn(buf, offset, mlen, ev)
        return ev

    def _learn(self, buf: bytes, offset: int, mlen: int, ev: CtEvent) -> None:
        self.attempts -= 1
        fill = compile_fill(buf, offset, mlen, ev)
        if fill is None:
            return
        self.keep(mlen << 8 | ev.family, fill, 2)  # (mask, image, fill): a new mask/image


# ------------------------------------------------------------------ shapes (fast path)
#
# Why: the walker costs about half a microsecond per attribute and a DESTROY has
# some thirty, nested.  But the kernel sends every conntrack of one kind (family,
# protocol, which extensions are on) in one shape: the same attributes in the same
# order with the same lengths, only the values differ.  So the shapes of the messages
# the walker decoded are learnt (`attrs.message_shape`, the protocol numbers pinned
# since ulogd's validity rules depend on them) and a function generated for each that
# unpacks all values with one `struct` call and builds the record in one expression.
# A message that matches gives exactly what the walker gives (`CtDecoder(learn=False)`
# has no fast path, to compare both); anything else takes the walker.  Each generated
# function is named after its shape (`ulogpy.core.codegen`), so a traceback shows it.

#: Values the validity rules read: part of a shape, not only of its values.
_PINNED = frozenset({"orig.ip.protocol", "reply.ip.protocol"})


#: The decoder of `decode_ct`, for callers that do not keep their own.
default_decoder = CtDecoder()
#: Decode with `default_decoder` (a bound method: no extra call on the hot path).
decode_ct = default_decoder.decode


def reset_shapes(enabled: bool = True) -> None:
    """Forget what `default_decoder` learnt; without `enabled`, only the walker decodes."""
    default_decoder.reset(enabled)


def compile_fill(buf: bytes, offset: int, mlen: int, ev: CtEvent) -> tuple[int, int, Any] | None:
    """(mask, image, fill) for the shape of the message the walker decoded into `ev`.

    `fill(buf, start, event, mtype, mflags)` returns the `CtEvent` the walker would.
    Which ulogd keys survive the validity rules depends only on what the shape pins
    (family, protocol numbers), so they are read off `ev`: a key the walker stored
    is taken from the message, any other key of `ev` is a constant (`_ALWAYS`,
    `oob.family`).
    """
    shape = message_shape(buf, offset + _MIN_LEN, offset + mlen, CT_TABLE, _PINNED)
    if shape is None:
        return None
    source: dict[str, str] = {}  # output name -> expression (the last store wins)
    for name, where in shape.stores:
        if isinstance(where, tuple):
            source[name] = f"buf[start + {where[0]}:start + {where[1]}]"
        else:
            source[name] = f"_{where}"
    items = []
    for key, value in ev.values.items():
        if key in source:
            items.append(f"{key!r}: {source[key]}")
        elif type(value) is int:
            items.append(f"{key!r}: {value!r}")
        else:
            return None
    extras = {attr: source.get(name, repr(default)) for attr, name, default in _EXTRAS}
    orig = source.get(_X_ORIG, "b''")
    reply = source.get(_X_REPLY, "b''")
    count = sum(1 for _name, where in shape.stores if not isinstance(where, tuple))
    lines = ["def fill(buf, start, event, mtype, mflags):"]
    if count:
        lines.append(f"    {', '.join(f'_{i}' for i in range(count))}, = _unpack(buf, start)")
    lines += [
        f"    zone = {extras['zone']}",
        f"    key = {orig} + {reply}",
        "    if zone:",
        "        key += _ZONE(zone)",
        f"    return _CtEvent(event, mtype, mflags, {ev.family}, {{{', '.join(items)}}},",
        f"                    {extras['start_ns']}, {extras['stop_ns']}, {extras['event_ns']},",
        f"                    key, zone, {extras['status']}, {extras['icmp_id']},",
        f"                    {extras['icmpv6_type']}, {extras['icmpv6_code']})",
    ]
    scope = {"_unpack": shape.unpack, "_ZONE": _ZONE, "_CtEvent": CtEvent}
    fill = define(lines, "fill", f"conntrack shape family {ev.family} len {mlen}", scope)
    return shape.mask, shape.image, fill


def build_dump_request(seq: int, family: int = 0, zero_counters: bool = False) -> bytes:
    """An IPCTNL_MSG_CT_GET dump request (family 0 = AF_UNSPEC = IPv4 and IPv6).

    With `zero_counters` it is IPCTNL_MSG_CT_GET_CTRZERO: the kernel reports
    each entry's counters and resets them (what ulogd does on SIGUSR2).
    """
    sub = IPCTNL_MSG_CT_GET_CTRZERO if zero_counters else IPCTNL_MSG_CT_GET
    mtype = (NFNL_SUBSYS_CTNETLINK << 8) | sub
    return NLMSGHDR.pack(_MIN_LEN, mtype, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + NFGENMSG.pack(
        family, NFNETLINK_V0, 0
    )


def build_destroy_message(family: int, tuples: bytes, ct_id: int, mark: int,
                          zone: int = 0) -> bytes:
    """A conntrack DESTROY event for a flow known only by its tuple attributes.

    `tuples` is a `CtEvent.tuple_key` without the zone: the CTA_TUPLE_ORIG and
    CTA_TUPLE_REPLY attributes as the kernel sent them.  Event mode keeps only
    that and a few numbers per live flow; `decode_ct` of this message gives the
    flow's keys back when its DESTROY has to be reported from a resync.
    """
    body = tuples + attr(CTA_ID, _BE32(ct_id)) + attr(CTA_MARK, _BE32(mark))
    if zone:
        body += attr(CTA_ZONE, _ZONE(zone))
    return NLMSGHDR.pack(_MIN_LEN + len(body), _CT_DELETE, 0, 0, 0) + \
        NFGENMSG.pack(family, NFNETLINK_V0, 0) + body


def build_ctrzero_request(seq: int, family: int = 0) -> bytes:
    """Dump-and-reset-counters request; see `build_dump_request`."""
    return build_dump_request(seq, family, zero_counters=True)
