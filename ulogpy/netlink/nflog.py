"""nfnetlink_log codec: NFULNL_MSG_PACKET to ulogd NFLOG keys, NFULNL_MSG_CONFIG builders.

This is the per-packet hot path.  The attributes of a packet message are
declared once in `PACKET_ATTRS` (numbers from the kernel UAPI header
``linux/netfilter/nfnetlink_log.h``); `decode_packet` walks them in one loop
straight into a dict that already uses ulogd's key names, then applies
ulogd's validity rules (spec 4.1): ifindexes only when non-zero, the
hardware header only with a non-zero length, the kernel time stamp only
when its seconds are non-zero.  What ulogd does not export (bridge port
ifindexes, ct_info, VLAN, full L2 header) is kept under ``nflog.*`` names
that no plugin declares, so no output ever shows them.  ``ct`` holds the
NFULA_CT payload: ctnetlink attributes, which `conntrack.CT_TABLE` walks.
Messages of a shape seen before take a fast path learnt from the generic
loop (see "shapes" below): same result, a third of the time.

Why a walker of its own rather than `attrs.walk`: NFLOG attributes are flat
(the conntrack nest is kept as bytes), several carry two fields (packet
header, hardware address, time stamp), and a damaged attribute must not
cost the rest of the packet -- ulogd's behaviour is to log what it can.

Error contract: `decode_packet` raises `MalformedMessage` (from
`ulogpy.netlink.attrs`) and nothing else.  A broken netlink/nfgenmsg header
raises `MalformedMessage` itself; damaged attributes behind a sound header
raise its subclass `PartialMessage`, whose `values` hold everything that was
decoded (the caller logs the packet anyway and counts the damage).  It
returns None for well-formed messages that are not NFLOG packets
(NLMSG_DONE closing a batch, other subsystems).  No value ever comes from
bytes outside the message.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Any

from ulogpy import fastpath
from ulogpy.core.codegen import define
from ulogpy.netlink.attrs import MalformedMessage, attr, message_length
from ulogpy.netlink.nlsock import NLM_F_ACK, NLM_F_REQUEST, NLMSGHDR
from ulogpy.netlink.shapes import ShapeCache

__all__ = [
    "MalformedMessage",
    "NflogDecoder",
    "PartialMessage",
    "decode_packet",
    "reset_shapes",
    "build_config",
    "build_bind",
    "build_unbind",
    "build_pf_bind",
    "build_pf_unbind",
    "build_mode",
    "build_qthreshold",
    "build_timeout",
    "build_flags",
    "build_nlbufsiz",
    "group_portid",
]

# nfnetlink
NFNL_SUBSYS_ULOG = 4
NFNETLINK_V0 = 0
NFGENMSG = struct.Struct("!BBH")  # family, version, res_id (= group, big endian)

# enum nfulnl_msg_types
NFULNL_MSG_PACKET = 0
NFULNL_MSG_CONFIG = 1
MSG_PACKET = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET
MSG_CONFIG = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG

# enum nfulnl_attr_type
NFULA_PACKET_HDR = 1  # struct nfulnl_msg_packet_hdr: be16 hw_protocol, u8 hook, pad
NFULA_MARK = 2  # be32
NFULA_TIMESTAMP = 3  # be64 sec, be64 usec
NFULA_IFINDEX_INDEV = 4  # be32
NFULA_IFINDEX_OUTDEV = 5
NFULA_IFINDEX_PHYSINDEV = 6
NFULA_IFINDEX_PHYSOUTDEV = 7
NFULA_HWADDR = 8  # struct nfulnl_msg_packet_hw: be16 hw_addrlen, pad, u8 hw_addr[8]
NFULA_PAYLOAD = 9
NFULA_PREFIX = 10  # NUL-terminated string
NFULA_UID = 11  # be32
NFULA_SEQ = 12  # be32, per instance (group)
NFULA_SEQ_GLOBAL = 13  # be32, all instances of the netns
NFULA_GID = 14  # be32
NFULA_HWTYPE = 15  # be16 ARPHRD_*
NFULA_HWHEADER = 16  # the link-layer header
NFULA_HWLEN = 17  # be16
NFULA_CT = 18  # nested ctnetlink attributes (with NFULNL_CFG_F_CONNTRACK)
NFULA_CT_INFO = 19  # be32 enum ip_conntrack_info
NFULA_VLAN = 20  # nested: NFULA_VLAN_PROTO, NFULA_VLAN_TCI (be16 each)
NFULA_L2HDR = 21  # full L2 header (bridge family)

NFULA_VLAN_PROTO = 1
NFULA_VLAN_TCI = 2

# enum nfulnl_msg_config_cmds
NFULNL_CFG_CMD_NONE = 0
NFULNL_CFG_CMD_BIND = 1
NFULNL_CFG_CMD_UNBIND = 2
NFULNL_CFG_CMD_PF_BIND = 3
NFULNL_CFG_CMD_PF_UNBIND = 4

# enum nfulnl_attr_config
NFULA_CFG_CMD = 1  # u8 command
NFULA_CFG_MODE = 2  # packed: be32 copy_range, u8 copy_mode, u8 pad
NFULA_CFG_NLBUFSIZ = 3  # be32
NFULA_CFG_TIMEOUT = 4  # be32, 1/100 s
NFULA_CFG_QTHRESH = 5  # be32
NFULA_CFG_FLAGS = 6  # be16

NFULNL_COPY_NONE = 0
NFULNL_COPY_META = 1
NFULNL_COPY_PACKET = 2
#: What ulogd asks for; the kernel clamps it to 0xffff - 4 (see /proc/net/netfilter).
COPY_RANGE_ULOGD = 0xFFFF

NFULNL_CFG_F_SEQ = 0x1
NFULNL_CFG_F_SEQ_GLOBAL = 0x2
NFULNL_CFG_F_CONNTRACK = 0x4

# ------------------------------------------------------------------ packet attributes

# Entry kinds: small ints so the loop's dispatch is a cheap comparison.
ONE = 0  # one fixed-size number: names[0] = unpack(...)[0]
TWO = 1  # a struct with two fields: names[0], names[1]
DATA = 2  # the payload as bytes; names[1] (if any) = its length
TEXT = 3  # NUL-terminated string
HWADDR = 4  # address length, then that many of the 8 address bytes

# An entry: (kind, names, unpack_from or None, minimum payload size, struct format
# without byte order -- all NFLOG numbers are big endian).
Entry = tuple[int, tuple[str, ...], Any, int, str]


def _num(fmt: str, *names: str) -> Entry:
    st = struct.Struct(">" + fmt)
    return (ONE if len(names) == 1 else TWO, names, st.unpack_from, st.size, fmt)


def _data(name: str, length_name: str = "") -> Entry:
    return (DATA, (name, length_name), None, 0, "")


# Names of values that are not ulogd keys (no plugin declares them).
PHYSINDEV = "nflog.physindev"
PHYSOUTDEV = "nflog.physoutdev"
CT_INFO = "nflog.ct_info"
VLAN = "nflog.vlan"
L2HDR = "nflog.l2hdr"

PACKET_ATTRS: dict[int, Entry] = {
    NFULA_PACKET_HDR: _num("HBx", "oob.protocol", "oob.hook"),
    NFULA_MARK: _num("I", "oob.mark"),
    NFULA_TIMESTAMP: _num("QQ", "oob.time.sec", "oob.time.usec"),
    NFULA_IFINDEX_INDEV: _num("I", "oob.ifindex_in"),
    NFULA_IFINDEX_OUTDEV: _num("I", "oob.ifindex_out"),
    NFULA_IFINDEX_PHYSINDEV: _num("I", PHYSINDEV),
    NFULA_IFINDEX_PHYSOUTDEV: _num("I", PHYSOUTDEV),
    NFULA_HWADDR: (HWADDR, ("raw.mac.saddr", "raw.mac.addrlen"), None, 12, "H2x8s"),
    NFULA_PAYLOAD: _data("raw.pkt", "raw.pktlen"),
    NFULA_PREFIX: (TEXT, ("oob.prefix",), None, 0, ""),
    NFULA_UID: _num("I", "oob.uid"),
    NFULA_SEQ: _num("I", "oob.seq.local"),
    NFULA_SEQ_GLOBAL: _num("I", "oob.seq.global"),
    NFULA_GID: _num("I", "oob.gid"),
    NFULA_HWTYPE: _num("H", "raw.type"),
    NFULA_HWHEADER: _data("raw.mac"),
    NFULA_HWLEN: _num("H", "raw.mac_len"),
    NFULA_CT: _data("ct"),
    NFULA_CT_INFO: _num("I", CT_INFO),
    NFULA_VLAN: _data(VLAN),
    NFULA_L2HDR: _data(L2HDR),
}
# Single numbers are most attributes: the loop looks them up first, in a table of their own.
_SCALARS = {t: (e[1][0], e[2], e[3]) for t, e in PACKET_ATTRS.items() if e[0] == ONE}
_OTHERS = {t: e for t, e in PACKET_ATTRS.items() if e[0] != ONE}

_NLHDR = NLMSGHDR.unpack_from
_AHDR = struct.Struct("=HH").unpack_from
_HWADDR = struct.Struct(">H2x8s").unpack_from
_MIN_LEN = NLMSGHDR.size + NFGENMSG.size  # 20
_U32 = 0xFFFFFFFF


class PartialMessage(MalformedMessage):
    """Some attributes were damaged; `values` holds what could be decoded."""

    def __init__(self, message: str, values: dict[str, Any]) -> None:
        super().__init__(message)
        self.values = values


class NflogDecoder(ShapeCache):
    """Decodes NFLOG packet messages, learning the shapes of those it decodes ("shapes").

    Why an object: the learnt shapes are state, so each owner (an NFLOG instance, a
    test, a tool) keeps its own and no one fills or resets another's.
    `decode_packet` and `reset_shapes` work on `default_decoder`, shared by the process.
    """

    __slots__ = ("walk",)

    def __init__(self, learn: bool = True, compiled: bool = True) -> None:
        #: ``walk(buf, pos, end, v) -> damage``: `_walk`, compiled where it is built.
        self.walk = packet_walker(compiled)
        # The compiled walker beats a learnt shape: with it, nothing is learnt.
        super().__init__(learn and self.walk is _walk)

    def decode(
        self, buf: bytes, offset: int = 0, length: int | None = None,
        base: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Decode the NFLOG packet message at ``buf[offset:offset+length]`` into ulogd keys.

        `base` holds the keys every record carries (copied, never modified): the
        plugin passes ``raw.pktcount``, ``raw.label`` and ``oob.mark`` = 0 there.
        The result also has ``oob.family`` (nfgen_family), ``raw`` (the whole
        message), and whatever the attributes carry.  Missing time stamps are
        left to the caller (ulogd uses the reception time).

        `length` bounds the message (default: to the end of `buf`); its own
        nlmsg_len must fit inside.  Values are slices of `buf` (other buffer
        types are copied to `bytes` first).
        """
        if type(buf) is not bytes:
            buf = bytes(buf)  # values are slices: they must not share a buffer reused later
        length = message_length(len(buf), offset, length)
        if length < _MIN_LEN:
            raise MalformedMessage("message shorter than nlmsghdr + nfgenmsg")
        mlen, mtype = _NLHDR(buf, offset)[:2]
        if mlen < _MIN_LEN or mlen > length:
            raise MalformedMessage(f"bad nlmsg_len {mlen}")
        if mtype != MSG_PACKET:
            return None
        end = offset + mlen
        start = offset + _MIN_LEN
        v: dict[str, Any] = {} if base is None else base.copy()
        v["oob.family"] = buf[offset + 16]
        v["raw"] = buf[offset:end]

        # (no shapes with the compiled walker: then not even the key is cut out)
        shapes = self.shapes and self.shapes.get(buf[start : start + _KEY_LEN])
        if shapes:
            for mask, image, size, fill in shapes:
                if size <= end - start and int.from_bytes(buf[start : start + size], "little") \
                        & mask == image:
                    ppos = start + size - 4
                    alen = _AHDR(buf, ppos)[0]
                    if alen >= 4 and ppos + ((alen + 3) & ~3) == end:
                        fill(v, buf, start)
                        v["raw.pkt"] = buf[ppos + 4 : ppos + alen]
                        v["raw.pktlen"] = alen - 4
                        return v
                    break
        damage = self.walk(buf, start, end, v)
        _validity(v)
        if damage is not None:
            raise PartialMessage(damage, v)
        if self.attempts > 0:
            self._learn(buf, start, end)
        return v

    def _learn(self, buf: bytes, start: int, end: int) -> None:
        self.attempts -= 1
        shape = compile_shape(buf, start, end)
        if shape is None:
            return
        key, entry = shape
        self.keep(key, entry, 3)  # (mask, image, size, fill): a new mask/image/size


def packet_walker(compiled: bool = True) -> Any:
    """The walker of `PACKET_ATTRS`: the compiled one of `ulogpy.fastpath` where it is
    built (and `compiled` is on), made from the same table; else `_walk`.  Same values,
    same damage messages."""
    if compiled and fastpath.compiled is not None:
        return fastpath.compiled.FlatWalker(PACKET_ATTRS)
    return _walk


def _walk(buf: bytes, pos: int, end: int, v: dict[str, Any]) -> str | None:
    """The generic loop: every attribute in ``buf[pos:end]`` into `v`; what was damaged."""
    # Hot loop; literals stand for the entry kinds and NLA_TYPE_MASK.
    scalar = _SCALARS.get
    other = _OTHERS.get
    hdr = _AHDR
    damage = None
    while pos < end:
        if end - pos < 4:
            return f"attribute header truncated ({end - pos} bytes left)"
        alen, atype = hdr(buf, pos)
        nxt = pos + alen
        if alen < 4 or nxt > end:
            return f"bad attribute length {alen} ({end - pos} bytes left)"
        atype &= 0x3FFF
        ent = scalar(atype)
        if ent is not None:
            if alen - 4 >= ent[2]:
                v[ent[0]] = ent[1](buf, pos + 4)[0]
            else:
                damage = f"attribute {ent[0]} too short ({alen - 4} bytes)"
        else:
            ent = other(atype)
            if ent is not None:
                kind, names, unpack, size, _ = ent
                p = pos + 4
                if alen - 4 < size:
                    damage = f"attribute {names[0]} too short ({alen - 4} bytes)"
                elif kind == 2:
                    v[names[0]] = buf[p:nxt]
                    if names[1]:
                        v[names[1]] = alen - 4
                elif kind == 1:
                    v[names[0]], v[names[1]] = unpack(buf, p)
                elif kind == 3:
                    nul = buf.find(b"\0", p, nxt)
                    v[names[0]] = buf[p : nxt if nul < 0 else nul].decode(
                        "utf-8", "surrogateescape")
                else:  # HWADDR
                    addrlen, addr = _HWADDR(buf, p)
                    v[names[0]] = addr[:addrlen]
                    v[names[1]] = addrlen
        pos = nxt + (-alen & 3)
    return damage


def _validity(v: dict[str, Any]) -> None:
    """ulogd's rules for the keys whose mere presence is not enough (spec 4.1)."""
    sec = v.get("oob.time.sec")
    if sec is not None:
        if sec == 0:  # ulogd: "timestamp_usec contains crap if timestamp_sec == 0"
            del v["oob.time.sec"], v["oob.time.usec"]
        elif sec > _U32 or v["oob.time.usec"] > _U32:
            v["oob.time.sec"] = sec & _U32
            v["oob.time.usec"] &= _U32
    if v.get("oob.ifindex_in", 1) == 0:
        del v["oob.ifindex_in"]
    if v.get("oob.ifindex_out", 1) == 0:
        del v["oob.ifindex_out"]
    # The link-layer header counts only with a non-zero NFULA_HWLEN; then raw.type is
    # valid too (0 without NFULA_HWTYPE), and raw.mac is whatever NFULA_HWHEADER held.
    mac_len = v.get("raw.mac_len")
    if mac_len:
        if "raw.mac" not in v:
            v["raw.mac"] = b""
        if "raw.type" not in v:
            v["raw.type"] = 0
    elif mac_len == 0 or "raw.mac" in v or "raw.type" in v:
        v.pop("raw.mac_len", None)
        v.pop("raw.mac", None)
        v.pop("raw.type", None)


# ------------------------------------------------------------------ shapes (fast path)
#
# Why: in CPython the generic loop costs about half a microsecond per attribute, and a
# packet has ten or more.  But one log rule on one path always gives messages of one
# shape -- the same attributes, in the same order, with the same lengths (the prefix is
# the rule's, the link header the device's); only the payload, which the kernel puts
# last, varies.  So the shapes of the messages the generic loop decoded are learnt: a
# shape is every attribute header before the payload (and the payload's type) as an
# integer image with a mask, checked in one comparison, and a function generated for it
# that takes all values out with one `struct` call and applies ulogd's validity rules.
# A message that matches gives exactly what the generic loop gives (the unit tests
# compare both on recorded and mutated messages); anything else takes the loop.

#: Bytes of the attribute area that index the shapes: the packet header attribute
#: (hardware protocol, hook) and the header of the attribute after it.
_KEY_LEN = 12
# (mask, image, size up to and including the payload's header, fill(v, buf, start))
Shape = tuple[int, int, int, Any]

#: The decoder of `decode_packet`, for callers that do not keep their own.
default_decoder = NflogDecoder()
#: Decode with `default_decoder` (a bound method: no extra call on the hot path).
decode_packet = default_decoder.decode


def reset_shapes(enabled: bool = True) -> None:
    """Forget what `default_decoder` learnt; without `enabled`, only the generic loop decodes."""
    default_decoder.reset(enabled)


def compile_shape(buf: bytes, start: int, end: int) -> tuple[bytes, Shape] | None:
    """The shape of the (well-formed) attributes in ``buf[start:end]``, with its key.

    None when the message cannot have a fast path: no payload at the end, a
    known attribute twice, or too few attributes before the payload.
    """
    attrs = []
    pos = start
    while pos < end:
        alen, atype = _AHDR(buf, pos)
        attrs.append((atype, alen, pos - start))
        pos += (alen + 3) & ~3
    if not attrs or attrs[-1][0] & 0x3FFF != NFULA_PAYLOAD or attrs[-1][2] < _KEY_LEN:
        return None
    *fixed, (_ptype, _plen, prel) = attrs
    seen = [t & 0x3FFF for t, _, _ in fixed if t & 0x3FFF in PACKET_ATTRS]
    if len(seen) != len(set(seen)):
        return None
    size = prel + 4
    mask = bytearray(size)
    for _t, _alen, rel in fixed:
        mask[rel : rel + 4] = b"\xff\xff\xff\xff"
    mask[prel + 2 : prel + 4] = b"\xff\xff"  # the payload's type; its length varies
    region = buf[start : start + size]
    image = bytes(a & b for a, b in zip(region, mask, strict=True))
    fill = _compile_fill(fixed)
    entry = (int.from_bytes(mask, "little"), int.from_bytes(image, "little"), size, fill)
    return bytes(region[:_KEY_LEN]), entry


def _compile_fill(fixed: list[tuple[int, int, int]]) -> Any:
    """Generate ``fill(v, buf, start)`` for attributes (type, length, offset) before the payload."""
    fmt = [">"]
    local: dict[str, str] = {}  # ulogd/other key name -> local variable holding it
    post: list[str] = []
    count = 0

    def take(code: str) -> str:
        nonlocal count
        fmt.append(code)
        count += 1
        return f"_{count - 1}"

    for atype, alen, _rel in fixed:
        ent = PACKET_ATTRS.get(atype & 0x3FFF)
        fmt.append("4x")
        plen = alen - 4
        if ent is None:
            fmt.append(f"{plen}x" if plen else "")
        else:
            kind, names, _unpack, esize, efmt = ent
            if kind in (ONE, TWO):
                for code, name in zip(_split_fmt(efmt), names, strict=True):
                    local[name] = take(code)
                fmt.append(f"{plen - esize}x" if plen > esize else "")
            elif kind == DATA:
                local[names[0]] = take(f"{plen}s")
                if names[1]:
                    post.append(f"v[{names[1]!r}] = {plen}")
            elif kind == TEXT:
                var = take(f"{plen}s")
                post.append(f"v[{names[0]!r}] = {var}.partition(b'\\0')[0]"
                            f".decode('utf-8', 'surrogateescape')")
            else:  # HWADDR
                n = take("H")
                fmt.append("2x")
                a = take("8s")
                post.append(f"v[{names[0]!r}] = {a}[:{n}]")
                post.append(f"v[{names[1]!r}] = {n}")
                fmt.append(f"{plen - esize}x" if plen > esize else "")
        fmt.append(f"{-alen % 4}x" if alen % 4 else "")
    lines = [f"    {', '.join(f'_{i}' for i in range(count))}, = _unpack(buf, start)"
             if count else "    pass"]
    special = {"oob.time.sec", "oob.time.usec", "oob.ifindex_in", "oob.ifindex_out",
               "raw.mac_len", "raw.mac", "raw.type"}
    for name, var in local.items():
        if name not in special:
            lines.append(f"    v[{name!r}] = {var}")
    lines += [f"    {p}" for p in post]
    # ulogd's validity rules, for the attributes this shape has.
    if "oob.time.sec" in local:
        sec, usec = local["oob.time.sec"], local["oob.time.usec"]
        lines.append(f"    if {sec}:")
        lines.append(f"        v['oob.time.sec'] = {sec} & {_U32}")
        lines.append(f"        v['oob.time.usec'] = {usec} & {_U32}")
    for name in ("oob.ifindex_in", "oob.ifindex_out"):
        if name in local:
            lines.append(f"    if {local[name]}:")
            lines.append(f"        v[{name!r}] = {local[name]}")
    if "raw.mac_len" in local:
        mac_len = local["raw.mac_len"]
        lines.append(f"    if {mac_len}:")
        lines.append(f"        v['raw.mac_len'] = {mac_len}")
        lines.append(f"        v['raw.mac'] = {local.get('raw.mac', repr(b''))}")
        lines.append(f"        v['raw.type'] = {local.get('raw.type', '0')}")
    scope = {"_unpack": struct.Struct("".join(fmt)).unpack_from}
    return define(["def fill(v, buf, start):", *lines], "fill", "nflog shape", scope)


def _split_fmt(fmt: str) -> list[str]:
    """Struct codes of a format, padding kept with the code before it ("HBx" -> H, Bx)."""
    codes: list[str] = []
    for ch in fmt:
        if ch == "x" and codes:
            codes[-1] += ch
        else:
            codes.append(ch)
    return codes


# ------------------------------------------------------------------ config requests

_U8 = struct.Struct("B").pack
_BE16 = struct.Struct(">H").pack
_BE32 = struct.Struct(">I").pack
_MODE = struct.Struct(">IBx").pack  # struct nfulnl_msg_config_mode is packed: 6 bytes


def build_config(
    seq: int,
    group: int = 0,
    family: int = 0,
    *,
    cmd: int | None = None,
    mode: tuple[int, int] | None = None,
    nlbufsiz: int | None = None,
    timeout: int | None = None,
    qthresh: int | None = None,
    flags: int | None = None,
    ack: bool = True,
) -> bytes:
    """An NFULNL_MSG_CONFIG request for `group` (res_id); `family` is for PF (un)bind.

    `mode` is (copy_mode, copy_range).  With `ack` the kernel answers with an
    NLMSG_ERROR carrying 0 or the errno.
    """
    if not 0 <= group <= 0xFFFF:
        raise ValueError(f"group {group} outside 0..65535")
    body = b""
    if cmd is not None:
        body += attr(NFULA_CFG_CMD, _U8(cmd))
    if mode is not None:
        body += attr(NFULA_CFG_MODE, _MODE(mode[1], mode[0]))
    if nlbufsiz is not None:
        body += attr(NFULA_CFG_NLBUFSIZ, _BE32(nlbufsiz))
    if timeout is not None:
        body += attr(NFULA_CFG_TIMEOUT, _BE32(timeout))
    if qthresh is not None:
        body += attr(NFULA_CFG_QTHRESH, _BE32(qthresh))
    if flags is not None:
        body += attr(NFULA_CFG_FLAGS, _BE16(flags))
    nl_flags = NLM_F_REQUEST | (NLM_F_ACK if ack else 0)
    head = NLMSGHDR.pack(_MIN_LEN + len(body), MSG_CONFIG, nl_flags, seq, 0)
    return head + NFGENMSG.pack(family, NFNETLINK_V0, group) + body


def build_bind(seq: int, group: int) -> bytes:
    """Become the receiver of `group` (fails with EPERM if another socket has it)."""
    return build_config(seq, group, cmd=NFULNL_CFG_CMD_BIND)


def build_unbind(seq: int, group: int, ack: bool = True) -> bytes:
    return build_config(seq, group, cmd=NFULNL_CFG_CMD_UNBIND, ack=ack)


def build_pf_bind(seq: int, family: int) -> bytes:
    """Make nfnetlink_log the netns' logger for `family` (ulogd: group 0 or bind=1)."""
    return build_config(seq, 0, family, cmd=NFULNL_CFG_CMD_PF_BIND)


def build_pf_unbind(seq: int, family: int) -> bytes:
    return build_config(seq, 0, family, cmd=NFULNL_CFG_CMD_PF_UNBIND)


def build_mode(
    seq: int, group: int, copy_mode: int = NFULNL_COPY_PACKET, copy_range: int = COPY_RANGE_ULOGD
) -> bytes:
    return build_config(seq, group, mode=(copy_mode, copy_range))


def build_qthreshold(seq: int, group: int, qthresh: int) -> bytes:
    return build_config(seq, group, qthresh=qthresh)


def build_timeout(seq: int, group: int, timeout: int) -> bytes:
    """Flush timeout of the kernel's batch, in 1/100 s."""
    return build_config(seq, group, timeout=timeout)


def build_flags(seq: int, group: int, flags: int) -> bytes:
    return build_config(seq, group, flags=flags)


def build_nlbufsiz(seq: int, group: int, size: int) -> bytes:
    return build_config(seq, group, nlbufsiz=size)


# ------------------------------------------------------------------ who has a group

PROC_NFNETLINK_LOG = Path("/proc/net/netfilter/nfnetlink_log")
_INSTANCE_LINE = re.compile(r"^\s*(\d+)\s+(\d+)\s")


def group_portid(group: int, path: Path = PROC_NFNETLINK_LOG) -> int | None:
    """The netlink port id bound to `group` in the caller's netns, or None.

    Lines of the proc file start with the group number and the peer port id
    (then queue length, copy mode and range, flush timeout, use count).
    """
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        m = _INSTANCE_LINE.match(line)
        if m and int(m.group(1)) == group:
            return int(m.group(2))
    return None
