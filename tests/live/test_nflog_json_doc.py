"""The packet-logging setup of ulogd's JSON documentation, run unchanged.

The documented setup: rules log new SSH connections to NFLOG group 1 with
the prefix "SSH Attempt" and everything the default policy drops to group
2, for IPv4 and IPv6; two stacks `log2`/`log3` (labels 1 and 0) feed one
JSON instance with a device name and boolean labels, so Logstash sees
`"action": "allowed"` or `"blocked"`.

ulogpy runs that configuration as documented (only the output file moved
into a temporary directory).  The real ulogd runs the same configuration on
groups 11 and 12, to which the firewall logs the same packets, and its JSON
is the oracle.  The firewall is built twice: with iptables-nft and with the
nft `log group` equivalent.
"""

from __future__ import annotations

import json

import pytest

from tests.compare import CLOCK_TOLERANCE_S, Tally, compare_json
from tests.netns import NatTopology, Netns, ping, probe, tcp_echo, wait_until
from tests.ulogd_ref import ULOGPY, UlogdProcess, read_lines

pytestmark = [pytest.mark.live, pytest.mark.ulogd]

DOC_CONF = """\
[global]
stack=log2:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,mac2str1:HWHDR,json1:JSON
stack=log3:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,mac2str1:HWHDR,json1:JSON

[log2]
group={g_ssh}
numeric_label=1

[log3]
group={g_drop}
numeric_label=0

[json1]
file="{d}/ulogd.json"
sync=1
device="My awesome FW"
boolean_label=1
"""
#: The documented groups (ulogpy) and the oracle's copies (ulogd).
GROUPS = {"ulogpy": (1, 2), "ulogd": (11, 12)}


def iptables_rules() -> list[list[str]]:
    """The documented rules for iptables and ip6tables, each NFLOG rule once per daemon."""
    rules = []
    for tool in ("iptables", "ip6tables"):
        rules.append([tool, "-A", "INPUT", "-m", "state", "--state", "ESTABLISHED,RELATED",
                      "-j", "ACCEPT"])
        if tool == "ip6tables":  # IPv6 needs neighbour discovery to work at all
            for icmp_type in ("neighbour-solicitation", "neighbour-advertisement"):
                rules.append([tool, "-A", "INPUT", "-p", "ipv6-icmp", "--icmpv6-type",
                              icmp_type, "-j", "ACCEPT"])
        for g_ssh, _ in GROUPS.values():
            rules.append([tool, "-A", "INPUT", "-p", "tcp", "--dport", "22", "-m", "state",
                          "--state", "NEW", "-j", "NFLOG", "--nflog-prefix", "SSH Attempt",
                          "--nflog-group", str(g_ssh)])
        rules.append([tool, "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"])
        for _, g_drop in GROUPS.values():
            rules.append([tool, "-A", "INPUT", "-j", "NFLOG", "--nflog-group", str(g_drop)])
        rules.append([tool, "-A", "INPUT", "-j", "DROP"])
    return rules


def nft_ruleset() -> str:
    """The same firewall with nft `log group` statements."""
    ssh = " ".join(f'log prefix "SSH Attempt" group {g}' for g, _ in GROUPS.values())
    drop = " ".join(f"log group {g}" for _, g in GROUPS.values())
    return (
        "table inet docfw {\n"
        "  chain input {\n"
        "    type filter hook input priority 0; policy drop;\n"
        "    ct state established,related accept\n"
        "    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept\n"
        f"    tcp dport 22 ct state new {ssh} accept\n"
        f"    {drop}\n"
        "  }\n"
        "}\n"
    )


def _firewall(fw: Netns, flavour: str) -> None:
    if flavour == "nft":
        fw.nft(nft_ruleset())
    else:
        for rule in iptables_rules():
            fw.run(rule)


def _traffic(topo: NatTopology) -> None:
    for fam in (4, 6):
        fw = topo.fw_lan_ip(fam)
        tcp_echo(topo.lan, topo.fw, fw, port=22)  # an SSH attempt, accepted
        assert probe(topo.lan, "tcp", fw, 80, timeout=0.5) == "timeout"  # dropped
        ping(topo.lan, fw, count=1, wait=1, check=False)  # dropped


@pytest.fixture(scope="module", params=["iptables-nft", "nft"])
def run(request, tmp_path_factory):
    base = tmp_path_factory.mktemp(f"json-doc-{request.param}")
    with NatTopology(nat=False) as topo:
        _firewall(topo.fw, request.param)
        dirs = {name: base / name for name in GROUPS}
        daemons = []
        for name, (g_ssh, g_drop) in GROUPS.items():
            dirs[name].mkdir()
            conf = DOC_CONF.format(d=dirs[name], g_ssh=g_ssh, g_drop=g_drop)
            binary = {"binary": ULOGPY} if name == "ulogpy" else {}
            daemons.append(UlogdProcess(topo.fw, conf, dirs[name] / "run", **binary))
        with daemons[0], daemons[1]:
            _traffic(topo)
            last = [-1]

            def settled() -> bool:
                counts = [len(read_lines(d / "ulogd.json")) for d in dirs.values()]
                done = counts[0] == counts[1] == last[0] and counts[0] >= 6
                last[0] = counts[0]
                return done

            wait_until(settled, timeout=20, interval=0.5, what="both JSON files complete")
        yield {name: [json.loads(ln) for ln in read_lines(d / "ulogd.json")]
               for name, d in dirs.items()}


def _by_action(records: list[dict]) -> dict[str, list[str]]:
    """The two stacks append to one file in whatever order the groups are read; each
    group's own records keep the kernel's order."""
    out: dict[str, list[str]] = {}
    for rec in records:
        out.setdefault(rec["action"], []).append(json.dumps(rec))
    return out


def test_records_identical_to_ulogd(run):
    ours, theirs = _by_action(run["ulogpy"]), _by_action(run["ulogd"])
    assert set(ours) == set(theirs) == {"allowed", "blocked"}
    tally = Tally()
    for action in ours:
        compare_json(ours[action], theirs[action], tally, action, {None: {"oob.time"}})
    print(f"JSON doc setup: {tally} (tolerance {CLOCK_TOLERANCE_S}s)")
    assert not tally.differences, "\n".join(tally.differences[:20])


def test_documented_fields(run):
    records = run["ulogpy"]
    ssh = [r for r in records if r["action"] == "allowed"]
    blocked = [r for r in records if r["action"] == "blocked"]
    assert {r["oob.prefix"] for r in ssh} == {"SSH Attempt"}
    assert {r["dest_port"] for r in ssh} == {22}
    assert {r["oob.family"] for r in ssh} == {2, 10}
    assert any(r.get("dest_port") == 80 for r in blocked)
    assert any(r.get("icmp.type") == 8 for r in blocked)
    assert any(r.get("icmpv6.type") == 128 for r in blocked)
    assert all(r["dvc"] == "My awesome FW" and "raw.label" not in r for r in records)
    assert all(r["oob.in"] == "lan0" and r["oob.out"] == "" for r in records)
    assert all(r["mac.str"].count(":") == 13 for r in records)
