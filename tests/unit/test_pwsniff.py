"""PWSNIFF's rule on crafted IPv4 and IPv6 packets (the live test sends real ones).

The rule: a line starts at the payload's start or after CR or LF and begins with "USER "
or "PASS " in any case; its value is the rest of the line up to CR or LF, spaces
included; the line's end must be in the same packet; the value may not be empty; the
last match in a packet wins; only TCP to ports 21 and 110; every packet passes."""

from __future__ import annotations

import struct

import pytest
from ulogpy.plugins.filter.pwsniff import PWSNIFF, logins, tcp_payload


def tcp(dport: int, payload: bytes, options: bytes = b"") -> bytes:
    offset = (20 + len(options)) // 4
    return struct.pack(">HHIIBBHHH", 40000, dport, 1, 1, offset << 4, 0x18, 512, 0, 0) + \
        options + payload


def ipv4(segment: bytes, proto: int = 6, fragoff: int = 0x4000, options: bytes = b"",
         trailer: bytes = b"") -> bytes:
    ihl = (20 + len(options)) // 4
    head = struct.pack(">BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(segment), 1, fragoff,
                       64, proto, 0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    return head + options + segment + trailer


def ipv6(segment: bytes, ext: bytes = b"", first: int = 6) -> bytes:
    head = struct.pack(">IHBB16s16s", 6 << 28, len(ext) + len(segment), first, 64,
                       b"\xfd" + bytes(14) + b"\x01", b"\xfd" + bytes(14) + b"\x02")
    return head + ext + segment


def sniff(pkt: bytes) -> dict:
    plugin = PWSNIFF("pwsniff1", None)
    plugin.configure()
    record = {"raw.pkt": pkt}
    assert plugin.interp(record) is None  # every packet passes
    del record["raw.pkt"]
    return record


@pytest.mark.parametrize(("payload", "expected"), [
    (b"USER alice\r\n", {"pwsniff.user": "alice"}),
    (b"PASS s3cret\r\n", {"pwsniff.pass": "s3cret"}),
    (b"user bob\n", {"pwsniff.user": "bob"}),
    (b"pAsS x\r", {"pwsniff.pass": "x"}),
    (b"PASS two words \r\n", {"pwsniff.pass": "two words "}),
    (b"USER  lead\r\n", {"pwsniff.user": " lead"}),
    (b"USER a\r\nPASS b\r\n", {"pwsniff.user": "a", "pwsniff.pass": "b"}),
    (b"USER a\rPASS b\r", {"pwsniff.user": "a", "pwsniff.pass": "b"}),
    (b"NOOP\r\nUSER c\r\n", {"pwsniff.user": "c"}),
    (b"USER first\r\nUSER second\r\n", {"pwsniff.user": "second"}),
    (b"USER done\r\nPASS cut-off", {"pwsniff.user": "done"}),   # line end not in packet
    (b"USER \r\n", {}),                                         # empty value
    (b"USER\r\n", {}),
    (b"XUSER a\r\n", {}),                                       # not at a line start
    (b"  USER a\r\n", {}),
    (b"USERa\r\n", {}),
    (b"USER\ta\r\n", {}),
    (b"PASS p\xc3\xa9\xff\r\n", {"pwsniff.pass": "p\u00e9\\xff"}),
])
def test_rule(payload: bytes, expected: dict) -> None:
    assert logins(payload) == expected
    assert sniff(ipv4(tcp(21, payload))) == expected
    assert sniff(ipv6(tcp(110, payload))) == expected


@pytest.mark.parametrize("dport", [20, 22, 25, 143, 2121, 40000])
def test_other_ports_are_not_looked_at(dport: int) -> None:
    assert sniff(ipv4(tcp(dport, b"USER a\r\nPASS b\r\n"))) == {}


def test_udp_is_not_looked_at() -> None:
    udp = struct.pack(">HHHH", 40000, 21, 8 + 14, 0) + b"USER a\r\nPASS b\r\n"
    assert sniff(ipv4(udp, proto=17)) == {}


def test_ip_and_tcp_options_are_skipped() -> None:
    pkt = ipv4(tcp(21, b"USER opt\r\n", options=b"\x01\x01\x01\x00"),
               options=b"\x94\x04\x00\x00")
    assert sniff(pkt) == {"pwsniff.user": "opt"}


def test_ipv6_extension_headers_are_walked() -> None:
    hop = bytes([60, 0]) + bytes(6)                      # hop-by-hop, then dest options
    dest = bytes([44, 0]) + bytes(6)                     # dest options, then fragment
    frag = bytes([6, 0]) + struct.pack(">HI", 1, 7)      # first fragment, more follow
    assert sniff(ipv6(tcp(110, b"PASS v6\r\n"), hop + dest + frag, first=0)) == \
        {"pwsniff.pass": "v6"}


def test_later_fragments_are_left_alone() -> None:
    assert sniff(ipv4(tcp(21, b"USER a\r\n"), fragoff=0x2000 | 3)) == {}
    frag = bytes([6, 0]) + struct.pack(">HI", 3 << 3, 7)
    assert sniff(ipv6(tcp(21, b"USER a\r\n"), frag, first=44)) == {}


def test_bytes_past_the_ip_length_are_not_payload() -> None:
    assert sniff(ipv4(tcp(21, b"USER a"), trailer=b"\r\n")) == {}


@pytest.mark.parametrize("cut", [0, 1, 19, 20, 39, 40])
def test_short_packets_pass_without_keys(cut: int) -> None:
    assert sniff(ipv4(tcp(21, b"USER a\r\n"))[:cut]) == {}
    assert tcp_payload(ipv6(tcp(21, b""))[:cut]) is None


def test_not_ip_passes_without_keys() -> None:
    assert sniff(b"\x00" * 60) == {}
    assert sniff(b"") == {}


def test_damaged_packets_never_raise() -> None:
    """Every truncation and many random byte flips of real-shaped packets pass quietly."""
    import random

    rng = random.Random(1234)
    seeds = [ipv4(tcp(21, b"USER a\r\nPASS b\r\n")), ipv6(tcp(110, b"PASS c\r\n")),
             ipv6(tcp(21, b"USER d\r\n"), bytes([6, 0]) + bytes(6), first=0)]
    for pkt in seeds:
        for cut in range(len(pkt) + 1):
            sniff(pkt[:cut])
        for _ in range(3000):
            damaged = bytearray(pkt)
            for _ in range(rng.randint(1, 4)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            found = sniff(bytes(damaged))
            assert set(found) <= {"pwsniff.user", "pwsniff.pass"}
