"""Smoke tests of the live-test harness: the NAT topology and the reference ulogd."""

from __future__ import annotations

import re

import pytest

from tests.netns import CtEntry, Flow, NatTopology, conntrack_list, ping, wait_until
from tests.ulogd_ref import UlogdProcess, read_lines, wait_for_lines

pytestmark = pytest.mark.live


def _matches(entry: CtEntry, flow: Flow) -> bool:
    o = entry.orig
    if entry.proto != flow.ct_proto or o.get("src") != flow.src or o.get("dst") != flow.dst:
        return False
    if flow.proto == "icmp":
        return o.get("id") == str(flow.icmp_id)
    return o.get("sport") == str(flow.sport) and o.get("dport") == str(flow.dport)


def test_nat_topology_conntrack(nat_topology: NatTopology) -> None:
    topo = nat_topology
    # plain reachability with the ping binary as well
    ping(topo.lan, topo.wan_ip4)
    ping(topo.lan, topo.wan_ip6)

    flows = []
    for fam in (4, 6):
        for proto in ("tcp", "udp", "icmp"):
            (flow,) = topo.generate_flows([fam], [proto])
            flows.append(flow)
            # check right away: TCP entries only live 1 s after the close
            entries = [e for e in conntrack_list(topo.fw, fam) if _matches(e, flow)]
            assert len(entries) == 1, (flow, [e.line for e in conntrack_list(topo.fw)])
            e = entries[0]
            assert e.family == fam
            # masqueraded: the reply goes to fw's wan address
            assert e.reply["src"] == flow.dst
            assert e.reply["dst"] == topo.fw_wan_ip(fam)
            assert flow.src == topo.lan_ip(fam)
            if proto == "tcp":
                assert "ASSURED" in e.flags

    # fast TCP timeouts: the closed TCP flows leave the table within a few seconds
    def tcp_gone() -> bool:
        return not [e for e in conntrack_list(topo.fw) if e.proto == "tcp"]

    wait_until(tcp_gone, timeout=10, what="TCP conntrack entries to expire")
    # UDP / ICMP ones are still there
    remaining = conntrack_list(topo.fw)
    for flow in flows:
        if flow.proto != "tcp":
            assert any(_matches(e, flow) for e in remaining), flow


_FLOW_RX = re.compile(r"\[NEW\] ORIG: (?P<orig>.*?) , REPLY: (?P<reply>.*?) ?$")


def _kv(part: str) -> dict[str, str]:
    return dict(t.split("=", 1) for t in part.split() if "=" in t)


@pytest.mark.ulogd
def test_reference_ulogd_logs_new_flows(nat_topology: NatTopology, tmp_path) -> None:
    topo = nat_topology
    flow_log = tmp_path / "flows.log"
    conf = f"""[global]
loglevel=3
stack=ct1:NFCT,ip2str1:IP2STR,print1:PRINTFLOW,emu1:LOGEMU

[ct1]
hash_enable=0
event_mask=0x00000001

[emu1]
file="{flow_log}"
sync=1
"""
    with UlogdProcess(topo.fw, conf, tmp_path / "ulogd") as ul:
        flows = topo.generate_flows()
        lines = wait_for_lines(flow_log, len(flows), timeout=10, match=r"\[NEW\] ")
        assert ul.running(), ul.output_text()
    assert ul.returncode == 0, ul.output_text()
    assert "entering main loop" in ul.log_text()
    # nothing but our flows (no stray NDP / MLD / other traffic), also after the wait
    assert read_lines(flow_log) == lines

    parsed = []
    for line in lines:
        m = _FLOW_RX.search(line)
        assert m, line
        parsed.append((_kv(m["orig"]), _kv(m["reply"]), line))

    for flow in flows:
        hits = []
        for orig, reply, line in parsed:
            if orig.get("SRC") != flow.src or orig.get("DST") != flow.dst:
                continue
            if flow.proto == "icmp":
                want = "ICMP" if flow.family == 4 else "58"
                if orig.get("PROTO") != want:
                    continue
            else:
                if orig.get("PROTO") != flow.proto.upper():
                    continue
                if (orig.get("SPT"), orig.get("DPT")) != (str(flow.sport), str(flow.dport)):
                    continue
            hits.append((reply, line))
        assert len(hits) == 1, (flow, lines)
        reply, line = hits[0]
        assert reply["SRC"] == flow.dst, line
        assert reply["DST"] == topo.fw_wan_ip(flow.family), line
        assert flow.src == topo.lan_ip(flow.family)
    assert len(lines) == len(flows), lines
