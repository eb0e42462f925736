"""Property-based tests: no input makes a decoder raise or read past its bounds.

Packet decoders (`ulogpy.packet`, BASE) get arbitrary bytes and also packets
that are well-formed up to a random point (real version nibbles, IHLs,
extension-header chains), so the fuzzing reaches the inner layers.  The
netlink decoders (`ulogpy.netlink.attrs`, `decode_ct`) may raise only their
documented `MalformedMessage`.

The bounds property is checked by padding: whatever follows the bytes a
decoder was given (`n`, or the message range) must not change its result.
Together with "no exception" this shows nothing past the end is read -- a
read past the end would either raise or make the result depend on the junk.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ulogpy.plugins.filter.base import BASE

from ulogpy.core.keys import KeyType
from ulogpy.netlink import attrs
from ulogpy.netlink.attrs import MalformedMessage
from ulogpy.netlink.conntrack import CT_TABLE, CtEvent, decode_ct
from ulogpy.packet import KEYS, decode_packet
from ulogpy.packet.arp import decode_arp
from ulogpy.packet.icmp import decode_icmp, decode_icmpv6
from ulogpy.packet.ipv4 import decode_ipv4
from ulogpy.packet.ipv6 import decode_ipv6
from ulogpy.packet.transport import decode_sctp, decode_tcp, decode_udp

FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ETHERTYPES = [0x0800, 0x86DD, 0x0806, 0x8100, 0]
FAMILIES = [2, 10, 7, 0, 1]
L4_PROTOS = [1, 6, 17, 58, 132, 136, 50, 51, 47, 0, 43, 44, 59, 60, 255]
EXT_TYPES = [0, 43, 44, 50, 51, 60]
LAYERS = [decode_tcp, decode_udp, decode_sctp, decode_icmp, decode_icmpv6]


def check_values(out: dict, limit: int) -> None:
    """Only declared keys, each with a value of its type; no raw value longer than the input."""
    for name, value in out.items():
        key = KEYS[name]
        if key.type is KeyType.IPADDR:
            assert type(value) is bytes and len(value) in (4, 16), name
            assert len(value) <= limit, name
        elif key.type is KeyType.RAW:
            assert type(value) is bytes and len(value) <= limit, name
        else:
            bits = {KeyType.UINT8: 8, KeyType.UINT16: 16, KeyType.UINT32: 32,
                    KeyType.BOOL: 8}[key.type]
            assert type(value) is int and 0 <= value < 1 << bits, name


# ---------------------------------------------------------------------------- strategies


@st.composite
def ipv4_packets(draw) -> bytes:
    """An IPv4 header with random fields (any IHL), options, and a random payload."""
    ihl = draw(st.integers(0, 15))
    head = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, draw(st.integers(0, 255)),
                       draw(st.integers(0, 0xFFFF)), 1, draw(st.integers(0, 0xFFFF)), 64,
                       draw(st.sampled_from(L4_PROTOS)), 0, b"\x0a\0\0\x01", b"\x0a\0\0\x02")
    opts = draw(st.binary(min_size=max(0, ihl * 4 - 20), max_size=max(0, ihl * 4 - 20)))
    return head + opts + draw(st.binary(max_size=64))


@st.composite
def ipv6_packets(draw) -> bytes:
    """An IPv6 header followed by a chain of plausible extension headers, then bytes."""
    chain = draw(st.lists(st.sampled_from(EXT_TYPES + [6, 17, 58]), max_size=5))
    first = chain[0] if chain else draw(st.sampled_from(L4_PROTOS))
    body = b""
    for i, _ in enumerate(chain):
        nxt = chain[i + 1] if i + 1 < len(chain) else draw(st.sampled_from(L4_PROTOS))
        length = draw(st.sampled_from([0, 0, 1, 2, 255]))
        fill = draw(st.binary(min_size=0, max_size=30))
        body += bytes([nxt, length]) + fill
    body += draw(st.binary(max_size=40))
    head = struct.pack("!IHBB", 0x60000000 | draw(st.integers(0, 0xFFFFFFF)),
                       draw(st.integers(0, 0xFFFF)), first, draw(st.integers(0, 255)))
    return head + bytes(range(32)) + body


PACKETS = st.one_of(st.binary(max_size=120), ipv4_packets(), ipv6_packets())


# ---------------------------------------------------------------------------- packet decoders


@FUZZ
@given(PACKETS, st.binary(min_size=1, max_size=16))
def test_ipv4_and_ipv6_decoders(pkt: bytes, junk: bytes) -> None:
    for decode in (decode_ipv4, decode_ipv6, decode_arp):
        out: dict = {}
        decode(pkt, len(pkt), out)
        check_values(out, len(pkt))
        padded: dict = {}
        decode(pkt + junk, len(pkt), padded)
        assert padded == out


@FUZZ
@given(st.binary(max_size=40), st.integers(0, 40), st.binary(min_size=1, max_size=8))
def test_transport_decoders(data: bytes, off: int, junk: bytes) -> None:
    off = min(off, len(data))
    for decode in LAYERS:
        out: dict = {}
        decode(data, off, len(data) - off, out)
        check_values(out, len(data))
        padded: dict = {}
        decode(data + junk, off, len(data) - off, padded)
        assert padded == out


@FUZZ
@given(PACKETS, st.sampled_from(FAMILIES + [255]), st.sampled_from(ETHERTYPES),
       st.integers(0, 200), st.binary(min_size=1, max_size=16))
def test_base_as_a_whole(pkt: bytes, family: int, proto: int, pktlen: int,
                         junk: bytes) -> None:
    """Any family, ethertype and claimed length: BASE passes the event on, bounded by pktlen."""
    plugin = BASE("b", None)
    rec = {"raw.pkt": pkt, "raw.pktlen": pktlen, "oob.family": family, "oob.protocol": proto}
    assert plugin.interp(rec) is None
    assert rec["oob.protocol"] == proto
    decoded = {k: v for k, v in rec.items() if k not in ("raw.pkt", "raw.pktlen", "oob.family")}
    check_values(decoded, min(pktlen, len(pkt)))
    # Only the first min(pktlen, len) bytes count: anything after them changes nothing.
    n = min(pktlen, len(pkt))
    again: dict = {}
    decode_packet(pkt[:n] + junk, n, family, proto, again)
    assert {**again, "oob.protocol": proto} == decoded


@FUZZ
@given(PACKETS, st.sampled_from([2, 10]), st.data())
def test_a_prefix_decodes_a_subset(pkt: bytes, family: int, data) -> None:
    """Truncation only removes keys: a prefix never gives a key the whole packet lacks,
    nor a different value (so lengths read from headers never shift what is decoded).

    One exception is ulogd's own: every IPv6 fragment header in a chain overwrites
    `ip6.fragoff`/`ip6.fragid`, so a prefix that ends before a second fragment header
    holds the first one's values; those keys must still be present in both."""
    full: dict = {}
    decode_packet(pkt, len(pkt), family, 0, full)
    cut = data.draw(st.integers(0, len(pkt)))
    part: dict = {}
    decode_packet(pkt, cut, family, 0, part)
    assert part.keys() <= full.keys()
    overwritten = _IPV6_FRAGMENT_KEYS if family == 10 else ()
    assert {k: v for k, v in part.items() if k not in overwritten}.items() <= full.items()


_IPV6_FRAGMENT_KEYS = ("ip6.fragoff", "ip6.fragid")


# ---------------------------------------------------------------------------- netlink


def walk_or_malformed(buf: bytes, start: int, end: int) -> dict | str:
    out: dict = {}
    try:
        attrs.walk(buf, start, end, CT_TABLE, out)
    except MalformedMessage:
        return "malformed"
    return out


@st.composite
def attribute_streams(draw) -> bytes:
    """Attribute headers with plausible types (nests included) and random lengths/payloads."""
    out = b""
    for _ in range(draw(st.integers(0, 6))):
        payload = draw(st.binary(max_size=24))
        atype = draw(st.sampled_from([1, 2, 3, 8, 9, 12, 18, 20, 0x8001, 0x8002, 99]))
        alen = draw(st.sampled_from([4 + len(payload), 0, 3, 4, 200]))
        out += struct.pack("=HH", alen, atype) + payload + bytes(-len(payload) % 4)
    return out


@FUZZ
@given(st.one_of(st.binary(max_size=200), attribute_streams()), st.binary(max_size=12))
def test_attribute_walker(buf: bytes, junk: bytes) -> None:
    res = walk_or_malformed(buf, 0, len(buf))
    if isinstance(res, dict):
        for name, value in res.items():
            if isinstance(value, bytes):
                assert len(value) <= len(buf), name
    assert walk_or_malformed(buf + junk, 0, len(buf)) == res
    try:
        for _atype, _flags, start, end in attrs.iter_attrs(buf, 0, len(buf)):
            assert 0 <= start <= end <= len(buf)
    except MalformedMessage:
        pass


def ct_or_malformed(buf, offset: int = 0, length: int | None = None):
    try:
        ev = decode_ct(buf, offset, length)
    except MalformedMessage:
        return "malformed"
    assert ev is None or isinstance(ev, CtEvent)
    return None if ev is None else (ev.event, ev.family, ev.values, ev.tuple_key, ev.zone)


@FUZZ
@given(st.binary(max_size=8), attribute_streams(), st.integers(0, 0xFFFF), st.integers(0, 0xFF),
       st.binary(max_size=12))
def test_decode_ct(lead: bytes, body: bytes, mtype: int, family: int, junk: bytes) -> None:
    """A message window inside a larger buffer: only MalformedMessage, nothing read outside."""
    msg = struct.pack("=IHHII", 20 + len(body), mtype, 0x400, 0, 0) + bytes([family, 0, 0, 0])
    msg += body
    res = ct_or_malformed(msg)
    assert ct_or_malformed(lead + msg + junk, len(lead), len(msg)) == res
    assert ct_or_malformed(bytearray(lead + msg), len(lead), len(msg)) == res


@FUZZ
@given(st.binary(max_size=120), st.integers(-4, 130), st.integers(-4, 130))
def test_decode_ct_arbitrary_ranges(buf: bytes, offset: int, length: int) -> None:
    ct_or_malformed(buf)
    ct_or_malformed(buf, offset, length)
    ct_or_malformed(memoryview(buf), offset, length)


@pytest.mark.parametrize("decode", [decode_ipv4, decode_ipv6, decode_arp])
def test_empty_buffer(decode) -> None:
    out: dict = {}
    decode(b"", 0, out)
    assert out == {}
