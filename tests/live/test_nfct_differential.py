"""ulogd 2.0.8 and ulogpy side by side on the same conntrack events.

Both daemons run in the firewall namespace of a lan/fw/wan topology with
masquerading, with the same stacks: the conntrack setups of the ulogd
documentation (NEW to LOGEMU, DESTROY to JSON with accounting and
timestamps), the default hash mode, and the accept filters.  TCP, UDP and
ICMP flows over IPv4 and IPv6 cross the NAT.  ulogpy's LOGEMU lines must be
byte-identical to ulogd's, its JSON records must have the same keys in the
same order with the same values; only values each daemon reads from its own
clock may differ, by at most `CLOCK_TOLERANCE_S`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.compare import CLOCK_TOLERANCE_S, Tally, compare_json, compare_logemu
from tests.netns import NatTopology, conntrack_flush, wait_until
from tests.ulogd_ref import ULOGPY, UlogdProcess, read_lines

pytestmark = [pytest.mark.live, pytest.mark.ulogd]

CONF = """\
[global]
loglevel=3
stack=ct1:NFCT,ip2str1:IP2STR,print1:PRINTFLOW,emu1:LOGEMU
stack=ct2:NFCT,ip2str1:IP2STR,json2:JSON
stack=ct3:NFCT,ip2str1:IP2STR,print1:PRINTFLOW,emu3:LOGEMU
stack=ct3:NFCT,ip2str1:IP2STR,json3:JSON
stack=ct4:NFCT,ip2str1:IP2STR,print1:PRINTFLOW,emu4:LOGEMU
stack=ct5:NFCT,ip2str1:IP2STR,print1:PRINTFLOW,emu5:LOGEMU
stack=ct6:NFCT,ip2str1:IP2STR,json6:JSON
stack=ct7:NFCT,ip2str1:IP2STR,print1:PRINTFLOW,emu7:LOGEMU
stack=ct8:NFCT,ip2str1:IP2STR,print1:PRINTFLOW,emu8:LOGEMU
stack=ct1:NFCT,ip2str1:IP2STR,json9:JSON
stack=ct2:NFCT,ip2str1:IP2STR,json10:JSON

# ulogd documentation: NEW events through IP2STR and PRINTFLOW to LOGEMU
[ct1]
event_mask=0x00000001
hash_enable=0
# ulogd documentation: DESTROY events through IP2STR to JSON
[ct2]
hash_enable=0
event_mask=0x00000004
# the default: hash mode, one record per flow at its end
[ct3]
# accept filters: IPv4 lan sources, TCP and UDP only
[ct4]
hash_enable=0
event_mask=0x00000005
accept_src_filter={lan_net4}
accept_proto_filter=tcp,udp
# accept filters: IPv6 wan destinations or an IPv4 net no flow goes to
[ct5]
hash_enable=0
event_mask=0x00000005
accept_dst_filter={wan_net6},10.254.0.0/16
# accept filters: a non-matching IPv4 source net and the lan's IPv6 net
[ct7]
hash_enable=0
event_mask=0x00000001
accept_src_filter=10.254.0.0/16,{lan_net6}
# accept filters: IPv6 destinations only, UDP only
[ct8]
hash_enable=0
event_mask=0x00000001
accept_dst_filter={wan_net6}
accept_proto_filter=udp
# NEW and DESTROY, each as it comes, as JSON
[ct6]
hash_enable=0
event_mask=5
[emu1]
file="{d}/new.log"
sync=1
[json2]
file="{d}/destroy.json"
sync=1
[emu3]
file="{d}/hash.log"
sync=1
[json3]
file="{d}/hash.json"
sync=1
[emu4]
file="{d}/filter_src_proto.log"
sync=1
[emu5]
file="{d}/filter_dst.log"
sync=1
[json6]
file="{d}/events.json"
sync=1
# Logstash event v1, a device name with spaces, no timestamp
[json9]
file="{d}/eventv1.json"
sync=0
eventv1=1
device="My awesome FW"
boolean_label=1
[json10]
file="{d}/notimestamp.json"
timestamp=0
[emu7]
file="{d}/filter_src_mixed.log"
sync=1
[emu8]
file="{d}/filter_dst6_udp.log"
sync=1
"""
LOGEMU_FILES = ("new.log", "hash.log", "filter_src_proto.log", "filter_dst.log",
                "filter_src_mixed.log", "filter_dst6_udp.log")
JSON_FILES = ("destroy.json", "hash.json", "events.json", "eventv1.json", "notimestamp.json")
#: flow.* values each daemon reads from its own clock, by ct.event: the kernel stamps
#: DESTROY events but not NEW ones, and in hash mode ulogd keeps NEW's reception time.
CLOCKED = {
    "destroy.json": {},
    "hash.json": {4: {"flow.start"}},
    "events.json": {1: {"flow.start"}},
    "eventv1.json": {1: {"flow.start"}},
    "notimestamp.json": {},
}


def _conf(topo: NatTopology, outdir: Path) -> str:
    return CONF.format(d=outdir, lan_net4=topo.lan_net4, lan_net6=topo.lan_net6,
                       wan_net6=topo.wan_net6)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Run both daemons on one traffic mix; return (ulogpy dir, ulogd dir, flows, topo)."""
    base = tmp_path_factory.mktemp("nfct-diff")
    with NatTopology() as topo:
        topo.fw.sysctls({
            "net.netfilter.nf_conntrack_acct": 1,
            "net.netfilter.nf_conntrack_timestamp": 1,
        })
        ours_dir, theirs_dir = base / "ulogpy", base / "ulogd"
        ours_dir.mkdir()
        theirs_dir.mkdir()
        ulogd = UlogdProcess(topo.fw, _conf(topo, theirs_dir), theirs_dir)
        ulogpy = UlogdProcess(topo.fw, _conf(topo, ours_dir), ours_dir / "run", binary=ULOGPY)
        with ulogd, ulogpy:  # both started, in their main loops
            flows = topo.generate_flows() + topo.generate_flows(protos=("tcp", "udp"))
            conntrack_flush(topo.fw)
            expected = len(flows)
            for d in (theirs_dir, ours_dir):
                wait_until(lambda d=d: len(read_lines(d / "new.log")) >= expected,
                           timeout=15, what=f"{expected} NEW lines in {d}")
                wait_until(lambda d=d: len(read_lines(d / "destroy.json")) >= expected,
                           timeout=15, what=f"{expected} DESTROY records in {d}")
                wait_until(lambda d=d: len(read_lines(d / "hash.log")) >= expected,
                           timeout=15, what=f"{expected} hash-mode lines in {d}")
            assert ulogpy.stop() == 0
            ulogd.stop()
        yield ours_dir, theirs_dir, flows, topo


def test_logemu_lines_identical(run):
    ours, theirs, _flows, _topo = run
    tally = Tally()
    for name in LOGEMU_FILES:
        compare_logemu(read_lines(ours / name), read_lines(theirs / name), tally, name)
    print(f"LOGEMU: {tally}")
    assert not tally.differences, "\n".join(tally.differences)
    assert tally.compared > 40


def test_json_records_identical(run):
    ours, theirs, _flows, _topo = run
    tally = Tally()
    for name in JSON_FILES:
        compare_json(read_lines(ours / name), read_lines(theirs / name), tally, name,
                     CLOCKED[name])
    print(f"JSON: {tally} (tolerance {CLOCK_TOLERANCE_S}s)")
    assert not tally.differences, "\n".join(tally.differences)
    assert tally.compared > 500


def test_new_events_name_every_flow_and_its_nat_address(run):
    ours, _theirs, flows, topo = run
    lines = read_lines(ours / "new.log")
    assert all(" [NEW] ORIG: " in line for line in lines)
    for flow in flows:
        nat = topo.fw_wan_ip(flow.family)
        hit = [ln for ln in lines
               if f"ORIG: SRC={flow.src} DST={flow.dst} " in ln and f"DST={nat} " in ln
               and (flow.proto == "icmp" or f"SPT={flow.sport} DPT={flow.dport} " in ln)]
        assert hit, f"no NEW line for {flow} in\n" + "\n".join(lines)


def test_destroy_json_carries_kernel_counters_and_times(run):
    ours, _theirs, flows, _topo = run
    records = [json.loads(line) for line in read_lines(ours / "destroy.json")]
    assert len(records) == len(flows)
    for rec in records:
        assert rec["ct.event"] == 4
        assert rec["orig.raw.pktcount"] >= 1 and rec["orig.raw.pktlen"] > 0
        start = rec["flow.start.sec"] + rec["flow.start.usec"] / 1e6
        end = rec["flow.end.sec"] + rec["flow.end.usec"] / 1e6
        assert 0 <= end - start < 30


def test_hash_mode_one_record_per_flow_with_start_and_end(run):
    ours, _theirs, flows, _topo = run
    records = [json.loads(line) for line in read_lines(ours / "hash.json")]
    assert len(records) == len(flows)
    assert {r["ct.event"] for r in records} == {4}
    assert all("flow.start.sec" in r and "flow.end.sec" in r for r in records)


def test_accept_filters(run):
    ours, _theirs, flows, topo = run
    src_proto = read_lines(ours / "filter_src_proto.log")
    v4_tcp_udp = [f for f in flows if f.family == 4 and f.proto in ("tcp", "udp")]
    assert len(src_proto) >= 2 * len(v4_tcp_udp)
    assert not any("PROTO=ICMP" in ln or "PROTO=58" in ln for ln in src_proto)
    assert all(f"SRC={topo.lan_ip4} " in ln for ln in src_proto if "SRC=10." in ln)
    # ulogd 2.0.8: an IPv4 item in accept_dst_filter rejects every IPv6 flow.
    assert read_lines(ours / "filter_dst.log") == []
    src_mixed = read_lines(ours / "filter_src_mixed.log")
    assert src_mixed and all(f"ORIG: SRC={topo.lan_ip6} " in ln for ln in src_mixed)
    dst6_udp = read_lines(ours / "filter_dst6_udp.log")
    assert {ln.split("ORIG: SRC=")[1].split()[0] for ln in dst6_udp} == {
        topo.lan_ip4, topo.lan_ip6}
    assert all("PROTO=UDP" in ln for ln in dst6_udp)
