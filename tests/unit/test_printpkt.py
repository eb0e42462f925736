"""PRINTPKT against what ulogd 2.0.8 writes.

Three oracles:
* the golden LOGEMU lines real ulogd wrote (`fixtures/unixsock/logemu_utc.log` from the
  packets of `send_unixsock.py`, `fixtures/printpkt/t5_pkt.log` from NFLOG traffic), with
  each input record rebuilt from the JSON line ulogd wrote for the same packet;
* ulogd's own PRINTPKT plugin called in-process (`tests.ulogd_so`) on hand-made records
  for every branch of the grammar (ICMP codes, IPv6 fragments, ARP, bridge, ...);
* the same plugin on random records (hypothesis), all keys present or absent at random.
"""

from __future__ import annotations

import json
import re
import string
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ulogpy.plugins.filter.printpkt import PRINTPKT, format_packet

from tests import ulogd_so
from ulogpy.config.errors import ConfigError
from ulogpy.config.load import load_config
from ulogpy.core.stack import build_pipeline

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
LOGEMU_HEAD = re.compile(r"^\w{3} [ \d]\d \d\d:\d\d:\d\d \S+ ")
#: (JSON, LOGEMU) files ulogd wrote for the same packets (see the fixtures' READMEs).
GOLDEN = [
    ("unixsock/json_utc.log", "unixsock/logemu_utc.log"),
    ("printpkt/t5_pkt.json", "printpkt/t5_pkt.log"),
]
_L4_BY_PROTO = {6: "tcp", 17: "udp", 132: "sctp"}

needs_oracle = pytest.mark.skipif(ulogd_so.skip_reason() is not None,
                                  reason=str(ulogd_so.skip_reason()))


# -- golden lines -----------------------------------------------------------------------
def record_from_json(line: str) -> dict:
    """The PRINTPKT input record behind one of ulogd's JSON lines (JSON renames undone)."""
    fields = json.loads(line)
    l4 = _L4_BY_PROTO.get(fields.get("ip.protocol"))
    renames = {"src_ip": "ip.saddr.str", "dest_ip": "ip.daddr.str",
               "src_port": f"{l4}.sport", "dest_port": f"{l4}.dport"}
    record = {}
    for name, value in fields.items():
        if name in ("timestamp", "dvc"):
            continue
        if name == "mac.str":  # HWHDR's text of the whole header: the raw header back
            record["raw.mac"] = bytes.fromhex(value.replace(":", ""))
            continue
        record[renames.get(name, name)] = value
    return record


def _golden_pairs() -> list[tuple[str, str]]:
    pairs = []
    for jname, lname in GOLDEN:
        jlines = (FIXTURES / jname).read_text().splitlines()
        llines = (FIXTURES / lname).read_text().split("\n")[:-1]
        assert len(jlines) == len(llines)
        pairs += list(zip(jlines, llines, strict=True))
    return pairs


@pytest.mark.parametrize(("json_line", "logemu_line"), _golden_pairs())
def test_golden_logemu_line(json_line: str, logemu_line: str) -> None:
    record = record_from_json(json_line)
    assert logemu_line.startswith(LOGEMU_HEAD.match(logemu_line).group(0) + record["oob.prefix"])
    assert format_packet(record) == LOGEMU_HEAD.sub("", logemu_line) + "\n"


def test_interp_sets_print_and_never_stops() -> None:
    plugin = PRINTPKT("p", None)
    record = {"oob.family": 99}
    assert plugin.interp(record) is None
    assert record["print"] == "MAC= \n"


# -- the real plugin on chosen records ---------------------------------------------------
def _v4(**extra) -> dict:
    base = {"oob.family": 2, "oob.prefix": "P", "oob.in": "eth0", "oob.out": "", "oob.mark": 0,
            "ip.saddr.str": "10.0.0.1", "ip.daddr.str": "10.0.0.2", "ip.totlen": 84,
            "ip.tos": 0, "ip.ttl": 64, "ip.id": 7, "ip.fragoff": 0}
    base.update(extra)
    return base


def _icmp(t: int, c: int, **extra) -> dict:
    return _v4(**{"ip.protocol": 1, "icmp.type": t, "icmp.code": c, "icmp.echoid": 11,
                  "icmp.echoseq": 12, "icmp.gateway": bytes([254, 1, 168, 192]),
                  "icmp.fragmtu": 1400, **extra})


def _v6(**extra) -> dict:
    base = {"oob.family": 10, "oob.prefix": "P6", "oob.in": "", "oob.out": "eth1",
            "ip.saddr.str": "fd00::1", "ip.daddr.str": "fd00::2", "ip6.payloadlen": 24,
            "ip6.priority": 0, "ip6.hoplimit": 64, "ip6.flowlabel": 0xABCDE}
    base.update(extra)
    return base


def _arp(op: int | None, **extra) -> dict:
    base = {"oob.family": 7, "oob.protocol": 0x0806, "oob.prefix": "A", "oob.in": "br0",
            "oob.out": "", "raw.mac": bytes(range(14)), "raw.mac_len": 14,
            "arp.hwtype": 1, "arp.protocoltype": 0x800,
            "arp.shwaddr": bytes.fromhex("02aabbccddee"),
            "arp.saddr.str": "10.0.0.1", "arp.dhwaddr": bytes(6), "arp.daddr.str": "10.0.0.2"}
    if op is not None:
        base["arp.operation"] = op
    base.update(extra)
    return base


CASES = {
    # ICMP: the extra part follows the code (ulogd's bug, kept)
    "icmp_echo_request": _icmp(8, 0),
    "icmp_echo_code8": _icmp(3, 8),
    "icmp_frag_needed_no_mtu": _icmp(3, 4),
    "icmp_redirect_code1": _icmp(5, 1),
    "icmp_code5_gateway": _icmp(3, 5),
    "icmp_code12_parameter": _icmp(12, 12),
    "icmp_param_problem_code0": _icmp(12, 0),
    "icmp_time_exceeded": _icmp(11, 0),
    "icmp_incomplete": _v4(**{"ip.protocol": 1}),
    "icmp_code_absent": _v4(**{"ip.protocol": 1, "icmp.type": 3}),
    # IPv4 header fields
    "tos_prec_all_bits": _v4(**{"ip.protocol": 47, "ip.tos": 0xFF}),
    "frag_ce_df_mf_offset": _v4(**{"ip.protocol": 47, "ip.fragoff": 0xFFFF}),
    "frag_offset_only": _v4(**{"ip.protocol": 47, "ip.fragoff": 0x0001}),
    "no_addresses": {k: v for k, v in _v4(**{"ip.protocol": 0}).items() if "addr" not in k},
    "ipv4_keys_all_absent": {"oob.family": 2},
    "esp": _v4(**{"ip.protocol": 50}),
    "ah": _v4(**{"ip.protocol": 51}),
    "esp_with_spi": _v4(**{"ip.protocol": 50, "ahesp.spi": 0xDEADBEEF}),
    "sctp": _v4(**{"ip.protocol": 132, "sctp.sport": 1, "sctp.dport": 2}),
    "sctp_incomplete": _v4(**{"ip.protocol": 132}),
    "udp_incomplete": _v4(**{"ip.protocol": 17}),
    "tcp_all_flags": _v4(**{"ip.protocol": 6, "tcp.sport": 1, "tcp.dport": 2, "tcp.seq": 3,
                            "tcp.ackseq": 4, "tcp.window": 5, "tcp.urgp": 6, "tcp.urg": 1,
                            "tcp.ack": 1, "tcp.psh": 1, "tcp.rst": 1, "tcp.syn": 1,
                            "tcp.fin": 1}),
    "tcp_ports_only": _v4(**{"ip.protocol": 6, "tcp.sport": 1}),
    # link layer, interfaces, prefix, owner
    "mac_header": _v4(**{"ip.protocol": 0, "raw.mac": bytes(range(14)), "raw.mac_len": 14}),
    "mac_len_zero": _v4(**{"ip.protocol": 0, "raw.mac": b"\x01", "raw.mac_len": 0}),
    "mac_len_absent": _v4(**{"ip.protocol": 0, "raw.mac": b"\x01\x02"}),
    "empty_prefix": _v4(**{"ip.protocol": 0, "oob.prefix": ""}),
    "prefix_with_space": _v4(**{"ip.protocol": 0, "oob.prefix": "DROP "}),
    "no_prefix_no_out": {k: v for k, v in _v4(**{"ip.protocol": 0}).items()
                         if k not in ("oob.prefix", "oob.out")},
    "uid_gid_mark": _v4(**{"ip.protocol": 0, "oob.uid": 1000, "oob.gid": 0,
                           "oob.mark": 0xC0FFEE}),
    # IPv6
    "ipv6_fragment": _v6(**{"ip6.nexthdr": 44, "ip6.fragoff": 1448, "ip6.fragid": 0x1234}),
    "ipv6_fragment_first_udp": _v6(**{"ip6.nexthdr": 17, "ip6.fragoff": 0, "ip6.fragid": 0xAB,
                                      "udp.sport": 53, "udp.dport": 5353, "udp.len": 16}),
    "ipv6_fragoff_without_id": _v6(**{"ip6.nexthdr": 59, "ip6.fragoff": 8}),
    "ipv6_icmpv6_reply": _v6(**{"ip6.nexthdr": 58, "icmpv6.type": 129, "icmpv6.code": 0,
                                "icmpv6.echoid": 3, "icmpv6.echoseq": 4}),
    "ipv6_icmpv6_unreach": _v6(**{"ip6.nexthdr": 58, "icmpv6.type": 1, "icmpv6.code": 4}),
    "ipv6_icmpv6_incomplete": _v6(**{"ip6.nexthdr": 58}),
    "ipv6_icmpv6_truncated": _v6(**{"ip6.nexthdr": 58, "icmpv6.type": 128}),
    "ipv6_esp_label_from_ip_protocol": _v6(**{"ip6.nexthdr": 50, "ip.protocol": 51}),
    "ipv6_keys_all_absent": {"oob.family": 10},
    # bridge: dispatch by ethertype
    "arp_request": _arp(1),
    "arp_reply_mac": _arp(2),
    "arp_reply_without_sha": {k: v for k, v in _arp(2).items() if k != "arp.shwaddr"},
    "arp_nak": _arp(10),
    "arp_other_code": _arp(9),
    "arp_no_operation": _arp(None),
    "bridge_ipv4": _v4(**{"oob.family": 7, "oob.protocol": 0x0800, "ip.protocol": 0}),
    "bridge_ipv6": _v6(**{"oob.family": 7, "oob.protocol": 0x86DD, "ip6.nexthdr": 59}),
    "bridge_other_ethertype": {"oob.family": 7, "oob.protocol": 0x88CC, "oob.prefix": "L"},
    "bridge_no_protocol": {"oob.family": 7, "oob.prefix": "L"},
    # families without a block: NFPROTO_ARP (3) and anything else print no layer 3
    "family_arp": _arp(1, **{"oob.family": 3}),
    "family_unknown": _v4(**{"oob.family": 12, "ip.protocol": 6}),
}


@needs_oracle
@pytest.mark.parametrize("name", sorted(CASES))
def test_same_text_as_ulogd(name: str) -> None:
    record = CASES[name]
    rc, out = ulogd_so.ulogd_filter("PRINTPKT").run(record)
    assert rc == ulogd_so.OK
    assert format_packet(dict(record)) == out["print"]


@needs_oracle
def test_quirks_are_in_the_oracle_text() -> None:
    """Spot checks that the cases above reach the quirky branches (not just agree)."""
    text = {name: format_packet(rec) for name, rec in CASES.items()}
    assert "TYPE=3 CODE=4 MARK" in text["icmp_frag_needed_no_mtu"]
    assert "GATEWAY=254.1.168.192 " in text["icmp_code5_gateway"]
    assert "PARAMETER=192 " in text["icmp_code12_parameter"]
    assert text["icmp_incomplete"].endswith("PROTO=ICMP INCOMPLETEMARK=0x0 \n")
    assert "TOS=1E PREC=0xE0 " in text["tos_prec_all_bits"]
    assert "CE DF MF FRAG:8191 " in text["frag_ce_df_mf_offset"]
    assert "FRAG: 1448 ID: 00001234 PROTO=44 " in text["ipv6_fragment"]
    assert "PROTO=ARP REPLY REPLY_MAC=02:aa:bb:cc:dd:ee " in text["arp_reply_mac"]
    assert text["mac_len_zero"].startswith("P IN=eth0 OUT= MAC=SRC=")


# -- the real plugin on random records -----------------------------------------------------
_TEXT = st.text(alphabet=string.ascii_letters + string.digits + ":.- ", max_size=12)
_U8, _U16 = st.integers(0, 0xFF), st.integers(0, 0xFFFF)
_U32 = st.integers(0, 0xFFFFFFFF)
_BOOL = st.integers(0, 1)
_PROTO = st.sampled_from([0, 1, 6, 17, 41, 44, 47, 50, 51, 58, 59, 132, 255])
_FIELDS = {
    "oob.family": st.sampled_from([2, 10, 7, 3, 0]),
    "oob.protocol": st.sampled_from([0x0800, 0x86DD, 0x0806, 0x8100, 0]),
    "oob.prefix": _TEXT, "oob.in": _TEXT, "oob.out": _TEXT,
    "oob.uid": _U32, "oob.gid": _U32, "oob.mark": _U32,
    "ip.saddr.str": _TEXT, "ip.daddr.str": _TEXT, "ip.totlen": _U16, "ip.tos": _U8,
    "ip.ttl": _U8, "ip.id": _U16, "ip.fragoff": _U16, "ip.protocol": _PROTO,
    "ip6.payloadlen": _U16, "ip6.priority": _U8, "ip6.hoplimit": _U8,
    "ip6.flowlabel": st.integers(0, 0xFFFFF), "ip6.nexthdr": _PROTO, "ip6.fragoff": _U16,
    "ip6.fragid": _U32,
    "tcp.sport": _U16, "tcp.dport": _U16, "tcp.seq": _U32, "tcp.ackseq": _U32,
    "tcp.window": _U16, "tcp.syn": _BOOL, "tcp.ack": _BOOL, "tcp.psh": _BOOL,
    "tcp.rst": _BOOL, "tcp.fin": _BOOL, "tcp.urg": _BOOL, "tcp.urgp": _U16,
    "udp.sport": _U16, "udp.dport": _U16, "udp.len": _U16,
    "icmp.type": st.one_of(st.sampled_from([0, 3, 5, 8, 11, 12]), _U8),
    "icmp.code": st.one_of(st.sampled_from([0, 3, 4, 5, 8, 12]), _U8),
    "icmp.echoid": _U16, "icmp.echoseq": _U16, "icmp.gateway": st.binary(min_size=4, max_size=4),
    "icmp.fragmtu": _U16,
    "icmpv6.type": st.one_of(st.sampled_from([1, 128, 129, 135]), _U8), "icmpv6.code": _U8,
    "icmpv6.echoid": _U16, "icmpv6.echoseq": _U16, "ahesp.spi": _U32,
    "arp.hwtype": _U16, "arp.protocoltype": _U16,
    "arp.operation": st.one_of(st.sampled_from([1, 2, 10]), _U16),
    "arp.shwaddr": st.binary(min_size=6, max_size=6), "arp.saddr.str": _TEXT,
    "arp.dhwaddr": st.binary(min_size=6, max_size=6), "arp.daddr.str": _TEXT,
    "sctp.sport": _U16, "sctp.dport": _U16,
}


@st.composite
def records(draw) -> dict:
    record = {}
    for name, strategy in _FIELDS.items():
        if draw(st.booleans()):
            record[name] = draw(strategy)
    if draw(st.booleans()):
        mac = draw(st.binary(max_size=20))
        record["raw.mac"] = mac
        if draw(st.integers(0, 3)):  # the length is (nearly) always there with the header
            record["raw.mac_len"] = draw(st.integers(0, len(mac)))
    return record


@needs_oracle
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records())
def test_random_records_same_text_as_ulogd(record: dict) -> None:
    rc, out = ulogd_so.ulogd_filter("PRINTPKT").run(record)
    assert rc == ulogd_so.OK
    assert format_packet(record) == out["print"]


# -- the stack it needs ------------------------------------------------------------------
def test_stack_without_ifindex_names_the_missing_key(tmp_path: Path) -> None:
    """PRINTPKT's inputs are required (ulogd's too): without IFINDEX the stack is refused
    with the key, the plugin and the plugin that would give it."""
    conf = tmp_path / "u.conf"
    conf.write_text(textwrap.dedent("""\
        [global]
        stack=log1:NFLOG,base1:BASE,ip2str1:IP2STR,print1:PRINTPKT,emu1:LOGEMU
        [log1]
        group=1
        [emu1]
        file="/dev/null"
        """))
    pytest.importorskip("ulogpy.plugins.input.nflog")
    pytest.importorskip("ulogpy.plugins.filter.base")
    with pytest.raises(ConfigError) as err:
        build_pipeline(load_config(str(conf)))
    text = str(err.value)
    assert "'oob.in'" in text and "print1:PRINTPKT" in text and "IFINDEX" in text


def test_canonical_stack_builds(tmp_path: Path) -> None:
    pytest.importorskip("ulogpy.plugins.input.nflog")
    pytest.importorskip("ulogpy.plugins.filter.base")
    conf = tmp_path / "u.conf"
    conf.write_text(textwrap.dedent("""\
        [global]
        stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,print1:PRINTPKT,emu1:LOGEMU
        [log1]
        group=1
        [emu1]
        file="/dev/null"
        """))
    pipeline = build_pipeline(load_config(str(conf)))
    assert [f.name for f in pipeline.stacks[0].filters] == ["BASE", "IFINDEX", "IP2STR",
                                                             "PRINTPKT"]

