"""BASE and the packet decoders against what the real ulogd 2.0.8 wrote.

The expectations come from `tests/fixtures/packets/ulogd_base.json`: the
OPRINT and JSON output of ulogd's own BASE (+ IP2STR) for every packet of the
crafted corpus, recorded by tests/live/test_base_oracle.py (which also checks
that the recording is still what ulogd writes).  What ulogd cannot show --
the bridge family, ARP, raw values, the plugin's edges -- is checked against
the spec (section 4.4) on packets built here.
"""

from __future__ import annotations

import json
import socket
import struct
from functools import cache

import pytest
from ulogpy.plugins.filter.base import BASE

from tests.fixtures.packets.corpus import (
    ACK,
    CASES,
    RECORDING,
    SYN,
    URG,
    icmp,
    ipv4,
    ipv6,
    tcp,
    udp,
    unixsock_family,
)
from tests.fixtures.packets.render import as_json, as_oprint, ulogpy_base
from ulogpy.core.keys import KeyType
from ulogpy.packet import KEYS, OK, TRUNCATED, UNKNOWN, decode_packet
from ulogpy.packet.fields import Field, Header, compile_header

ETH_P_IP, ETH_P_IPV6, ETH_P_ARP = 0x0800, 0x86DD, 0x0806
AF_INET, AF_INET6, AF_BRIDGE = 2, 10, 7


@cache
def recording() -> dict[str, dict]:
    return json.loads(RECORDING.read_text())


def run_base(record: dict) -> dict:
    plugin = BASE("base1", None)
    assert plugin.interp(record) is None  # BASE never stops the stack
    return record


def arp_packet(op: int = 1, sha: bytes = bytes.fromhex("020000000001"),
               spa: bytes = bytes([10, 0, 0, 1]), tha: bytes = bytes(6),
               tpa: bytes = bytes([10, 0, 0, 2])) -> bytes:
    return struct.pack("!HHBBH6s4s6s4s", 1, ETH_P_IP, 6, 4, op, sha, spa, tha, tpa)


# ---------------------------------------------------------------------------- vs ulogd


def test_recording_covers_the_corpus() -> None:
    """The recording was made from this very corpus (re-record after editing it)."""
    rec = recording()
    assert sorted(rec) == sorted(name for name, _ in CASES)
    for name, pkt in CASES:
        assert rec[name]["hex"] == pkt.hex(), name
        assert rec[name]["family"] == unixsock_family(pkt), name


@pytest.mark.parametrize(("name", "pkt"), CASES, ids=[c[0] for c in CASES])
def test_same_keys_and_values_as_ulogd(name: str, pkt: bytes) -> None:
    """Every key ulogd's BASE set, and no other, with ulogd's value (OPRINT and JSON)."""
    want = recording()[name]
    ours = ulogpy_base(pkt, want["family"])
    assert as_oprint(ours) == want["oprint"]
    assert as_json(ours) == want["json"]


def _ulogd_value(name: str, key: str) -> str | None:
    return recording()[name]["oprint"].get(key)


@pytest.mark.parametrize(("case", "key", "expected"), [
    # B4: the whole 16-bit word, flags included.
    ("frag-ce-df-mf-max", "ip.fragoff", "65535"),
    ("frag-mf-offset", "ip.fragoff", str(0x2000 | 185)),
    # B1: always 0.
    ("tcp-all-flags", "tcp.offset", "0"),
    ("tcp-all-flags", "tcp.reserved", "0"),
    # B2: checksums not byte-swapped (0xABCD on the wire -> 0xCDAB on x86).
    ("icmp-echo-reply", "icmp.csum", str(0xCDAB)),
    ("ipv6-icmpv6-echo-request", "icmpv6.csum", str(0x6B5A)),
])
def test_documented_quirks_are_in_the_recording(case: str, key: str, expected: str) -> None:
    """The spec's bug-compatible values (8.3 B1, B2, B4) are indeed what ulogd wrote."""
    assert _ulogd_value(case, key) == expected
    assert as_oprint(ulogpy_base(dict(CASES)[case], AF_INET if "ipv6" not in case
                                 else AF_INET6))[key] == expected


def test_header_only_and_non_first_fragments_as_ulogd() -> None:
    rec = recording()
    assert set(rec["header-only"]["oprint"]) == {"oob.protocol"}
    assert "udp.sport" in rec["frag-mf-offset"]["oprint"]  # non-first fragment decoded
    assert "ip.protocol" not in rec["ipv6-frag-nonfirst-udp"]["oprint"]
    assert rec["ipv6-frag-nonfirst-udp"]["oprint"]["ip6.nexthdr"] == "17"


# ---------------------------------------------------------------------------- values


def test_value_types_follow_the_key_types() -> None:
    """Integers are int, addresses 4/16 bytes, raw data bytes; nothing else is produced."""
    packets = [(pkt, unixsock_family(pkt), 0) for _, pkt in CASES]
    packets.append((arp_packet(), AF_BRIDGE, ETH_P_ARP))
    for pkt, family, proto in packets:
        rec = run_base({"raw.pkt": pkt, "raw.pktlen": len(pkt), "oob.family": family,
                        "oob.protocol": proto})
        for name, value in rec.items():
            if name in ("raw.pkt", "raw.pktlen", "oob.family"):
                continue
            key = KEYS[name]
            if key.type is KeyType.IPADDR:
                assert type(value) is bytes and len(value) in (4, 16), name
            elif key.type is KeyType.RAW:
                assert type(value) is bytes, name
            else:
                assert type(value) is int and value >= 0, name


def test_ipv6_addresses_are_the_16_bytes() -> None:
    pkt = dict(CASES)["ipv6-tcp"]
    rec = run_base({"raw.pkt": pkt, "raw.pktlen": len(pkt), "oob.family": AF_INET6})
    assert rec["ip.saddr"] == pkt[8:24] and rec["ip.daddr"] == pkt[24:40]
    assert socket.inet_ntop(socket.AF_INET6, rec["ip.daddr"]) == "fd00::beef"


def test_icmp_gateway_is_host_order() -> None:
    """ulogd stores ntohl(gateway): byte-reversed compared with ip.saddr (spec 4.4)."""
    pkt = ipv4(1, icmp(5, 1, bytes([192, 168, 1, 254])))
    rec = run_base({"raw.pkt": pkt, "raw.pktlen": len(pkt), "oob.family": AF_INET})
    assert rec["icmp.gateway"] == bytes([254, 1, 168, 192])


def test_tcp_urgp_only_with_urg() -> None:
    for flags, present in ((URG | ACK, True), (ACK, False)):
        pkt = ipv4(6, tcp(flags, urgp=77))
        rec = run_base({"raw.pkt": pkt, "raw.pktlen": len(pkt), "oob.family": AF_INET})
        assert ("tcp.urgp" in rec) is present
        assert rec["tcp.urg"] == (1 if present else 0)


# ---------------------------------------------------------------------------- bridge, ARP


def test_bridge_ip_is_decoded_like_the_inet_families() -> None:
    """Family 7 dispatches on the ethertype to the same IPv4/IPv6 decoders."""
    for name, pkt in CASES:
        family = unixsock_family(pkt)
        if family == 0:
            continue
        plain = run_base({"raw.pkt": pkt, "raw.pktlen": len(pkt), "oob.family": family})
        proto = ETH_P_IP if family == AF_INET else ETH_P_IPV6
        bridged = run_base({"raw.pkt": pkt, "raw.pktlen": len(pkt), "oob.family": AF_BRIDGE,
                            "oob.protocol": proto})
        plain.pop("oob.family"), bridged.pop("oob.family")
        assert bridged == {**plain, "oob.protocol": proto}, name


def test_arp_request() -> None:
    pkt = arp_packet(op=1) + bytes(18)  # Ethernet padding after the 28 bytes
    rec = run_base({"raw.pkt": pkt, "raw.pktlen": len(pkt), "oob.family": AF_BRIDGE,
                    "oob.protocol": ETH_P_ARP})
    assert {k: v for k, v in rec.items() if k.startswith("arp.")} == {
        "arp.hwtype": 1, "arp.protocoltype": ETH_P_IP, "arp.operation": 1,
        "arp.shwaddr": bytes.fromhex("020000000001"), "arp.saddr": bytes([10, 0, 0, 1]),
        "arp.dhwaddr": bytes(6), "arp.daddr": bytes([10, 0, 0, 2]),
    }
    assert rec["oob.protocol"] == ETH_P_ARP
    assert not any(k.startswith(("ip.", "ip6.", "tcp.")) for k in rec)


def test_arp_addresses_render_through_ip2str() -> None:
    """ulogd's pointer bug (8.3 B5) is fixed: IP2STR prints the real addresses."""
    from ulogpy.plugins.filter.ip2str import IP2STR

    pkt = arp_packet(op=2, spa=bytes([10, 9, 8, 7]), tpa=bytes([10, 1, 1, 1]))
    rec = run_base({"raw.pkt": pkt, "raw.pktlen": len(pkt), "oob.family": AF_BRIDGE,
                    "oob.protocol": ETH_P_ARP})
    IP2STR("i", None).interp(rec)
    assert rec["arp.saddr.str"] == "10.9.8.7" and rec["arp.daddr.str"] == "10.1.1.1"


@pytest.mark.parametrize("cut", [0, 1, 8, 27])
def test_arp_shorter_than_28_bytes_decodes_nothing(cut: int) -> None:
    pkt = arp_packet()[:cut]
    out: dict = {}
    assert decode_packet(pkt, len(pkt), AF_BRIDGE, ETH_P_ARP, out) == TRUNCATED
    assert out == {}


def test_arp_outside_the_bridge_family_is_not_decoded() -> None:
    pkt = arp_packet()
    for family in (AF_INET, AF_INET6, 0, 3):
        out: dict = {}
        decode_packet(pkt, len(pkt), family, ETH_P_ARP, out)
        assert not any(k.startswith("arp.") for k in out)


@pytest.mark.parametrize(("family", "proto"), [(AF_BRIDGE, 0x8100), (AF_BRIDGE, 0),
                                               (0, 0), (1, ETH_P_IP), (3, ETH_P_IP)])
def test_other_families_and_ethertypes_give_only_oob_protocol(family: int, proto: int) -> None:
    pkt = ipv4(6, tcp())
    plugin = BASE("b", None)
    rec = {"raw.pkt": pkt, "raw.pktlen": len(pkt), "oob.family": family, "oob.protocol": proto}
    assert plugin.interp(rec) is None
    assert set(rec) == {"raw.pkt", "raw.pktlen", "oob.family", "oob.protocol"}
    assert rec["oob.protocol"] == proto
    assert plugin.counters.get("unknown_family") == 1


# ---------------------------------------------------------------------------- the plugin


def test_oob_protocol_is_re_exported_and_zero_when_absent() -> None:
    pkt = ipv4(17, udp())
    rec = run_base({"raw.pkt": pkt, "raw.pktlen": len(pkt), "oob.family": AF_INET,
                    "oob.protocol": ETH_P_IP})
    assert rec["oob.protocol"] == ETH_P_IP
    rec = run_base({"raw.pkt": pkt, "raw.pktlen": len(pkt), "oob.family": AF_INET})
    assert rec["oob.protocol"] == 0  # what ulogd's JSON shows for UNIXSOCK input


def test_missing_inputs_decode_nothing() -> None:
    assert run_base({}) == {"oob.protocol": 0}
    pkt = ipv4(6, tcp())
    assert run_base({"raw.pkt": pkt, "oob.family": AF_INET}) == {
        "raw.pkt": pkt, "oob.family": AF_INET, "oob.protocol": 0}


def test_pktlen_bounds_the_decoding() -> None:
    """Bytes past raw.pktlen are not looked at; a pktlen past the buffer is clamped."""
    pkt = ipv4(6, tcp(SYN))
    short = run_base({"raw.pkt": pkt + b"junk", "raw.pktlen": 39, "oob.family": AF_INET})
    assert "ip.saddr" in short and "tcp.sport" not in short
    longer = run_base({"raw.pkt": pkt, "raw.pktlen": 1 << 31, "oob.family": AF_INET})
    exact = run_base({"raw.pkt": pkt, "raw.pktlen": len(pkt), "oob.family": AF_INET})
    longer.pop("raw.pktlen"), exact.pop("raw.pktlen")
    assert longer == exact


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_buffer_types(wrap) -> None:
    """An input may hand a bytearray or memoryview; values still come out as bytes."""
    for name, pkt in CASES:
        family = unixsock_family(pkt)
        a: dict = {}
        b: dict = {}
        decode_packet(pkt, len(pkt), family, 0, a)
        decode_packet(wrap(pkt), len(pkt), family, 0, b)
        assert a == b, name
        assert all(type(v) is not memoryview for v in b.values())


def test_counters() -> None:
    plugin = BASE("b", None)
    for pkt in (ipv4(6, tcp()), ipv4(6, tcp()[:10]), ipv4(6), ipv6(6, tcp())):
        plugin.interp({"raw.pkt": pkt, "raw.pktlen": len(pkt),
                       "oob.family": unixsock_family(pkt)})
    assert plugin.counters.get("truncated") == 2
    assert plugin.counters.get("unknown_family") == 0


def test_status_codes() -> None:
    pkt = ipv6(6, tcp())
    assert decode_packet(pkt, len(pkt), AF_INET6, 0, {}) == OK
    assert decode_packet(pkt, 50, AF_INET6, 0, {}) == TRUNCATED
    assert decode_packet(pkt, len(pkt), 99, 0, {}) == UNKNOWN


def test_keys_match_ulogd_declaration() -> None:
    """Every decoder key is a BASE output key; the JSON renames are ulogd's (spec 4.4)."""
    assert {k.name: k for k in BASE.output_keys} == KEYS
    cim = {k.name: k.cim_name for k in BASE.output_keys if k.cim_name}
    assert cim == {f"{p}.{d}port": ("src_port" if d == "s" else "dest_port")
                   for p in ("tcp", "udp", "sctp") for d in ("s", "d")}


# ---------------------------------------------------------------------------- the tables


def test_generated_decoder_reads_one_struct_and_honours_conditions() -> None:
    hdr = Header("demo", (
        Field("demo.a", 0, "H", KeyType.UINT16),
        Field("demo.flag", 2, "B", KeyType.BOOL, bits=(7, 1)),
        Field("demo.low", 2, "B", KeyType.UINT8, bits=(0, 0x7F)),
        Field("demo.b", 4, "I", KeyType.UINT32, when="{demo.flag}"),
        Field("_next", 3, "B"),
    ), returns=("_next",))
    decode = hdr.compile()
    out: dict = {}
    assert decode(b"\x01\x02\x85\x09\x00\x00\x00\x2a", 0, out) == (9,)
    assert out == {"demo.a": 0x0102, "demo.flag": 1, "demo.low": 5, "demo.b": 42}
    out = {}
    decode(b"\xff\x01\x02\x05\x09\x00\x00\x00\x2a", 1, out)
    assert out == {"demo.a": 0x0102, "demo.flag": 0, "demo.low": 5}
    assert hdr.size == 8
    layer = hdr.compile_layer()
    assert layer(b"\x00" * 8, 0, 7, {}) == TRUNCATED


@pytest.mark.parametrize("fields", [
    (Field("x.a", 0, "H", KeyType.UINT16), Field("x.b", 1, "B", KeyType.UINT8)),
    (Field("x.a", 0, "H", KeyType.UINT16), Field("x.b", 0, "B", KeyType.UINT8)),
    (Field("x.a", 0, "H", KeyType.UINT16, when="{x.nope}"),),
])
def test_bad_tables_are_refused(fields) -> None:
    with pytest.raises(ValueError):
        compile_header(Header("x", fields))
