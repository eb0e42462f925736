"""`network_namespace_path`: one daemon logs another namespace's firewall.

Two private namespaces, `home` (where ulogpy runs) and `guest`, each tracking its
UDP with conntrack and logging it to NFLOG groups 5 and 6.  ulogd 2.0.8 runs inside
`guest` (NFCT, and NFLOG group 5); ulogpy runs in `home` with NFCT and NFLOG group 6
pointed at /run/netns/<guest> (NFCT both in event mode and in hash mode, whose
start-up dump opens a socket of its own there), plus one NFCT stack of its own
namespace.  The
guest's stacks in ulogpy must write exactly what ulogd wrote inside the guest (so
nothing of `home` and nothing lost), and the home stack only home's flows.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.compare import Tally, compare_logemu
from tests.netns import Netns, udp_burst, wait_until
from tests.ulogd_ref import ULOGPY, UlogdProcess, read_lines

pytestmark = [pytest.mark.live, pytest.mark.ulogd]

RULESET = """
table inet t {
    chain out {
        type filter hook output priority 0;
        ct state new counter
        udp dport 9 log group 5
        udp dport 9 log group 6
    }
}
"""

ULOGD_CONF = """\
[global]
loglevel=3
stack=ct1:NFCT,ip2str1:IP2STR,print1:PRINTFLOW,emu1:LOGEMU
stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,print2:PRINTPKT,emu2:LOGEMU
stack=ct3:NFCT,ip2str1:IP2STR,print1:PRINTFLOW,emu3:LOGEMU
[ct3]
{ns_option}
[emu3]
file="{d}/hash.log"
sync=1
[ct1]
hash_enable=0
event_mask=5
{ns_option}
[log1]
group={group}
{ns_option}
[emu1]
file="{d}/flows.log"
sync=1
[emu2]
file="{d}/packets.log"
sync=1
"""

#: ulogpy's own stack on top: its own namespace's flows.
HOME_STACK = "stack=ct0:NFCT,ip2str0:IP2STR,print0:PRINTFLOW,emu0:LOGEMU\n"
HOME_SECTIONS = """\
[ct0]
hash_enable=0
event_mask=5
[emu0]
file="{d}/home.log"
sync=1
"""

GUEST_PORTS, HOME_PORTS = range(20000, 20008), range(21000, 21008)
#: Guest flows that start after ulogd and before ulogpy: ulogpy's hash mode learns them
#: from its start-up dump.  (The kernel sends events of a flow only if a listener was
#: there when it started: ulogd is.)
GUEST_EARLY = range(20100, 20104)


def _ports(lines: list[str]) -> set[int]:
    """The source port of each line (the first SPT=: the original direction)."""
    return {int(line.split(" SPT=", 1)[1].split()[0]) for line in lines}


@pytest.fixture
def namespaces(live_ok):
    with Netns("home") as home, Netns("guest") as guest:
        home.nft(RULESET)
        guest.nft(RULESET)
        yield home, guest


def test_stacks_log_the_namespace_they_point_at(namespaces, tmp_path: Path) -> None:
    home, guest = namespaces
    ours, theirs = tmp_path / "ulogpy", tmp_path / "ulogd"
    ours.mkdir()
    theirs.mkdir()
    path = f"/run/netns/{guest.name}"
    ours_conf = ULOGD_CONF.format(d=ours, group=6, ns_option=f'network_namespace_path="{path}"')
    ours_conf = ours_conf.replace("[global]\n", "[global]\n" + HOME_STACK, 1)
    ours_conf += HOME_SECTIONS.format(d=ours)
    ulogd = UlogdProcess(guest, ULOGD_CONF.format(d=theirs, group=5, ns_option=""), theirs)
    ulogpy = UlogdProcess(home, ours_conf, ours / "run", binary=ULOGPY)
    with ulogd:
        udp_burst(guest, "127.0.0.1", GUEST_EARLY[0], len(GUEST_EARLY), vary="sport")
        wait_until(lambda: len(read_lines(theirs / "flows.log")) == len(GUEST_EARLY),
                   timeout=10, what="ulogd's NEW lines of the early flows")
        with ulogpy:
            _traffic(home, guest, ours, theirs)
            assert ulogpy.stop() == 0
    tally = Tally()
    # What ulogd logged of the early flows before ulogpy started: their NEW events and
    # their packets (ulogpy saw their DESTROYs only, and knew them from its dump).
    early = tuple(f" SPT={p} " for p in GUEST_EARLY)
    before = {"flows.log": lambda ln: " [NEW] " in ln and any(e in ln for e in early),
              "packets.log": lambda ln: any(e in ln for e in early),
              "hash.log": lambda ln: False}
    for name, was_before in before.items():
        theirs_lines = [ln for ln in read_lines(theirs / name) if not was_before(ln)]
        compare_logemu(read_lines(ours / name), theirs_lines, tally, name)
    assert not tally.differences, "\n".join(tally.differences)
    assert tally.compared == 3 + 2 * (20 + 8 + 12), tally
    guest_all = {*GUEST_PORTS, *GUEST_EARLY}
    assert _ports(read_lines(ours / "flows.log")) == guest_all
    assert _ports(read_lines(ours / "packets.log")) == set(GUEST_PORTS)
    assert _ports(read_lines(ours / "hash.log")) == guest_all
    assert _ports(read_lines(ours / "home.log")) == set(HOME_PORTS)
    assert len(read_lines(ours / "home.log")) == 2 * len(HOME_PORTS)
    # The start-up dump read the guest's table: every DESTROY was of a flow it knew.
    counters = re.findall(r"counters ct3:NFCT: (.*)", ulogpy.log_text())[-1]
    assert "emitted=12" in counters.split() and "destroy_untracked" not in counters, counters


def _traffic(home: Netns, guest: Netns, ours: Path, theirs: Path) -> None:
    """The flows of both namespaces, ended by a flush; back once every line is there."""
    udp_burst(guest, "127.0.0.1", GUEST_PORTS[0], len(GUEST_PORTS), vary="sport")
    udp_burst(home, "127.0.0.1", HOME_PORTS[0], len(HOME_PORTS), vary="sport")
    guest.run(["conntrack", "-F"])
    home.run(["conntrack", "-F"])
    want = 2 * len(GUEST_PORTS) + len(GUEST_EARLY)  # early ones: ulogpy sees the DESTROY
    for d, more in ((theirs, len(GUEST_EARLY)), (ours, 0)):  # ulogd saw the early NEWs
        wait_until(lambda d=d, n=want + more: len(read_lines(d / "flows.log")) >= n,
                   timeout=10, what=f"NEW and DESTROY lines in {d}/flows.log")
        wait_until(lambda d=d: len(read_lines(d / "packets.log")) >= len(GUEST_PORTS),
                   timeout=10, what=f"NFLOG lines in {d}/packets.log")
        wait_until(lambda d=d: len(read_lines(d / "hash.log")) >= 12,
                   timeout=10, what=f"hash-mode lines in {d}/hash.log")
    wait_until(lambda: len(read_lines(ours / "home.log")) >= 2 * len(HOME_PORTS),
               timeout=10, what="the home stack's lines")


def test_a_path_that_is_no_namespace_is_a_start_error(live_ok, tmp_path: Path) -> None:
    conf = tmp_path / "u.conf"
    with Netns("nopath") as ns:
        for path, why in ((tmp_path / "missing", "No such file or directory"),
                          (conf, "not a network namespace")):
            conf.write_text(ULOGD_CONF.format(d=tmp_path, group=7,
                                              ns_option=f'network_namespace_path="{path}"'))
            r = ns.run([ULOGPY, "-c", conf], check=False)
            assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
            assert f"network namespace '{path}': {why}" in r.stderr, r.stderr
