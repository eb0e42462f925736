"""ulogd 2.0.8 and ulogpy side by side on the same NFLOG packets.

Both daemons run in the firewall namespace of a lan/fw/wan topology with
masquerading.  Every log rule of the firewall carries two `log` statements,
so the kernel sends each packet to two groups: one read by ulogd, one by
ulogpy, with otherwise identical configurations (the canonical stacks of
ulogd's documentation: PRINTPKT to LOGEMU, HWHDR to JSON, a MARK filter,
Logstash event v1 with boolean labels).

The traffic covers IPv4 and IPv6; TCP, UDP, ICMP/ICMPv6 echo and ICMP
errors; forwarded packets and the firewall's own packets in both
directions; accepted and dropped packets; prefixes with spaces and
punctuation, and no prefix; a non-zero mark.

LOGEMU lines must be byte-identical after the time stamp; JSON records must
have the same keys in the same order with the same values.  The kernel does
not time-stamp these packets (no socket asked for receive time stamps), so
`oob.time.*` is each daemon's reception time: those values, and the time
stamps derived from them, may differ by at most `CLOCK_TOLERANCE_S`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.compare import CLOCK_TOLERANCE_S, Tally, compare_json, compare_logemu
from tests.netns import NatTopology, icmp_echo, probe, tcp_echo, udp_echo, wait_until
from tests.ulogd_ref import ULOGPY, UlogdProcess, read_lines

pytestmark = [pytest.mark.live, pytest.mark.ulogd]

CONF = """\
[global]
loglevel=3
stack=acc:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,print1:PRINTPKT,emu1:LOGEMU
stack=acc:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,mac2str1:HWHDR,json1:JSON
stack=drop:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,print1:PRINTPKT,emu2:LOGEMU
stack=drop:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,mac2str1:HWHDR,json2:JSON
stack=acc:NFLOG,base1:BASE,mark1:MARK,ifi1:IFINDEX,ip2str1:IP2STR,print1:PRINTPKT,emu3:LOGEMU
stack=acc:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,mac2str1:HWHDR,json3:JSON
stack=drop:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,mac2str1:HWHDR,json4:JSON

# accepted packets, labelled 1
[acc]
group={g_acc}
numeric_label=1
# dropped packets, labelled 0 (the default)
[drop]
group={g_drop}
[mark1]
mark=0x2a
[emu1]
file="{d}/accepted.log"
sync=1
[emu2]
file="{d}/dropped.log"
sync=1
[emu3]
file="{d}/marked.log"
sync=1
[json1]
file="{d}/accepted.json"
sync=1
[json2]
file="{d}/dropped.json"
sync=1
[json3]
file="{d}/accepted_v1.json"
sync=1
eventv1=1
boolean_label=1
device="My awesome FW"
[json4]
file="{d}/dropped_v1.json"
sync=1
eventv1=1
boolean_label=1
timestamp=0
"""
LOGEMU_FILES = ("accepted.log", "dropped.log", "marked.log")
JSON_FILES = ("accepted.json", "dropped.json", "accepted_v1.json", "dropped_v1.json")
#: Packet records carry no ct.event; their oob.time pair is a reception time.
CLOCKED = {None: {"oob.time"}}

#: (ulogd's groups, ulogpy's groups) for accepted and dropped packets.
GROUPS = {"ulogd": (31, 32), "ulogpy": (41, 42)}

PREFIX_DROP = "DROP fwd: port 9, [discard] 100% 'x' "
PREFIX_FWD = "FWD new: "
PREFIX_REL = "FWD related;icmp err "
PREFIX_IN = "IN (local) new "
PREFIX_IN_DROP = "IN-drop"
MARK_PORTS = "7000-7999"
#: nfnetlink_log sends a group's queued packets at least this often (kernel default 1 s).
FLUSH_TIMEOUT_S = 1.5


def _log(prefix: str | None, kind: str) -> str:
    """Two log statements: the same packet to ulogd's group and to ulogpy's."""
    index = 0 if kind == "acc" else 1
    text = f'prefix "{prefix}" ' if prefix is not None else ""
    return " ".join(f"log {text}group {groups[index]}" for groups in GROUPS.values())


def ruleset() -> str:
    return (
        "table inet ulogpy_log {\n"
        "  chain forward_log {\n"
        "    type filter hook forward priority 0; policy accept;\n"
        f"    tcp dport 9 {_log(PREFIX_DROP, 'drop')} drop\n"
        f"    udp dport {MARK_PORTS} meta mark set 0x2a\n"
        f"    ct state new {_log(PREFIX_FWD, 'acc')}\n"
        f"    ct state related {_log(PREFIX_REL, 'acc')}\n"
        "  }\n"
        "  chain input_log {\n"
        "    type filter hook input priority 0; policy accept;\n"
        f"    tcp dport 9 {_log(PREFIX_IN_DROP, 'drop')} drop\n"
        f"    ct state new {_log(PREFIX_IN, 'acc')}\n"
        "  }\n"
        "  chain output_log {\n"
        "    type filter hook output priority 0; policy accept;\n"
        # MLD reports and neighbour discovery go out on the kernel's own timers (after
        # link-up, NUD probes), maybe while only one daemon listens: not compared.
        "    icmpv6 type { mld2-listener-report, nd-neighbor-solicit, nd-neighbor-advert,"
        " nd-router-solicit } return\n"
        f"    meta l4proto {{ tcp, udp, icmp, ipv6-icmp }} {_log(None, 'acc')}\n"
        "  }\n"
        "}\n"
    )


def _conf(outdir: Path, daemon: str) -> str:
    g_acc, g_drop = GROUPS[daemon]
    return CONF.format(d=outdir, g_acc=g_acc, g_drop=g_drop)


def _traffic(topo: NatTopology) -> dict[str, int]:
    """Every kind of packet the issue names; returns outcome counts for sanity checks."""
    outcomes: dict[str, int] = {}

    def note(what: str) -> None:
        outcomes[what] = outcomes.get(what, 0) + 1

    for fam in (4, 6):
        wan, fw_lan = topo.wan_ip(fam), topo.fw_lan_ip(fam)
        tcp_echo(topo.lan, topo.wan, wan)  # forwarded TCP, through NAT
        udp_echo(topo.lan, topo.wan, wan, port=7123)  # forwarded UDP, marked 0x2a
        icmp_echo(topo.lan, wan)  # forwarded echo
        note(probe(topo.lan, "udp", wan, 7999))  # forwarded ICMP port unreachable
        note(probe(topo.lan, "tcp", wan, 9, timeout=0.5))  # dropped in forward
        icmp_echo(topo.lan, fw_lan)  # local in, echo reply out
        note(probe(topo.lan, "tcp", fw_lan, 5555))  # local in, RST out
        note(probe(topo.lan, "udp", fw_lan, 5556))  # local in, ICMP error out
        note(probe(topo.lan, "tcp", fw_lan, 9, timeout=0.5))  # dropped in input
        tcp_echo(topo.fw, topo.wan, wan)  # the firewall's own connection (uid/gid)
    return outcomes


def _count(d: Path) -> int:
    return sum(len(read_lines(d / name)) for name in (*LOGEMU_FILES, *JSON_FILES))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Run both daemons on one traffic mix; return (ulogpy dir, ulogd dir, outcomes)."""
    base = tmp_path_factory.mktemp("nflog-diff")
    with NatTopology() as topo:
        topo.fw.nft(ruleset())
        ours_dir, theirs_dir = base / "ulogpy", base / "ulogd"
        ours_dir.mkdir()
        theirs_dir.mkdir()
        ulogd = UlogdProcess(topo.fw, _conf(theirs_dir, "ulogd"), theirs_dir)
        ulogpy = UlogdProcess(topo.fw, _conf(ours_dir, "ulogpy"), ours_dir / "run",
                              binary=ULOGPY)
        with ulogd, ulogpy:
            outcomes = _traffic(topo)
            # Both daemons see the same packets, but the kernel hands each group's batch
            # over on its own one-second timer (nfnetlink_log's default flush timeout):
            # wait past it, then until both have written alike and nothing moves.
            time.sleep(FLUSH_TIMEOUT_S)
            history: list[tuple[int, int]] = []

            def settled() -> bool:
                history.append((_count(ours_dir), _count(theirs_dir)))
                last = history[-3:]
                return len(last) == 3 and len(set(last)) == 1 and last[0][0] == last[0][1] > 0

            wait_until(settled, timeout=20, interval=0.5, what="both daemons written alike")
            assert ulogpy.stop() == 0
            ulogd.stop()
        yield ours_dir, theirs_dir, outcomes


def test_traffic_did_what_was_meant(run):
    _ours, _theirs, outcomes = run
    assert outcomes == {"refused": 6, "timeout": 4}


def test_logemu_lines_identical(run):
    ours, theirs, _ = run
    tally = Tally()
    for name in LOGEMU_FILES:
        compare_logemu(read_lines(ours / name), read_lines(theirs / name), tally, name)
    print(f"LOGEMU: {tally}")
    assert not tally.differences, "\n".join(tally.differences[:20])
    assert tally.compared > 80


def test_json_records_identical(run):
    ours, theirs, _ = run
    tally = Tally()
    for name in JSON_FILES:
        compare_json(read_lines(ours / name), read_lines(theirs / name), tally, name, CLOCKED)
    print(f"JSON: {tally} (tolerance {CLOCK_TOLERANCE_S}s)")
    assert not tally.differences, "\n".join(tally.differences[:20])
    assert tally.compared > 2500


def test_every_case_was_logged(run):
    """The comparison above is only as good as the traffic: check the mix is there."""
    ours, _theirs, _ = run
    accepted = read_lines(ours / "accepted.log")
    dropped = read_lines(ours / "dropped.log")
    text = "\n".join(accepted)
    for needle in (f" {PREFIX_FWD} IN=lan0 OUT=wan0 ", f" {PREFIX_REL} IN=wan0 OUT=lan0 ",
                   f" {PREFIX_IN} IN=lan0 OUT= ", "  IN= OUT=lan0 ", "  IN= OUT=wan0 ",
                   "PROTO=TCP", "PROTO=UDP", "PROTO=ICMP TYPE=8", "PROTO=ICMP TYPE=3 CODE=3",
                   "PROTO=ICMPv6 TYPE=128", "PROTO=ICMPv6 TYPE=1 CODE=4", "MARK=0x2a",
                   "UID=0 GID=0", " RST "):
        assert needle in text, f"no accepted line with {needle!r}"
    assert any(f" {PREFIX_DROP} IN=lan0 OUT=wan0 " in ln for ln in dropped)
    assert any(f" {PREFIX_IN_DROP} IN=lan0 OUT= " in ln for ln in dropped)
    marked = read_lines(ours / "marked.log")
    assert marked and all("MARK=0x2a " in ln for ln in marked)
    actions = {json.loads(ln)["action"] for ln in read_lines(ours / "accepted_v1.json")}
    assert actions == {"allowed"}
    actions = {json.loads(ln)["action"] for ln in read_lines(ours / "dropped_v1.json")}
    assert actions == {"blocked"}
