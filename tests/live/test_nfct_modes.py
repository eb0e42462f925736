"""NFCT's other modes, live: polling, SIGUSR2 dumps, socket options.

Polling is compared with ulogd 2.0.8 on the same flows (LOGEMU lines
byte-identical, time stamps aside).  SIGUSR2 resets the kernel counters, so
two daemons cannot share one table for it: ulogpy is checked against the
counters `conntrack -L` showed just before.
"""

from __future__ import annotations

import re
import signal
import time

import pytest

from tests.compare import Tally, compare_logemu
from tests.netns import (
    CONNTRACK_SHORT_UDP_ICMP,
    NatTopology,
    conntrack_flush,
    conntrack_list,
    wait_until,
)
from tests.ulogd_ref import ULOGPY, UlogdProcess, read_lines

pytestmark = [pytest.mark.live]

POLL_CONF = """\
[global]
loglevel=3
stack=ct1:NFCT,ip2str1:IP2STR,print1:PRINTFLOW,emu1:LOGEMU
[ct1]
pollinterval=1
[emu1]
file="{d}/poll.log"
sync=1
"""


@pytest.mark.ulogd
def test_polling_mode_matches_ulogd(tmp_path):
    with NatTopology() as topo:
        topo.fw.sysctl("net.netfilter.nf_conntrack_acct", 1)
        ours, theirs = tmp_path / "ulogpy", tmp_path / "ulogd"
        ours.mkdir()
        theirs.mkdir()
        with UlogdProcess(topo.fw, POLL_CONF.format(d=theirs), theirs), \
                UlogdProcess(topo.fw, POLL_CONF.format(d=ours), ours / "run", binary=ULOGPY):
            flows = topo.generate_flows(protos=("udp", "icmp"))
            time.sleep(2.5)  # two polls see the flows alive
            conntrack_flush(topo.fw)
            for d in (theirs, ours):
                wait_until(lambda d=d: len(read_lines(d / "poll.log")) >= len(flows),
                           timeout=10, what=f"polled DESTROY lines in {d}")
        tally = Tally()
        compare_logemu(read_lines(ours / "poll.log"), read_lines(theirs / "poll.log"), tally,
                       "poll.log", ordered=False)
        assert not tally.differences, "\n".join(tally.differences)
        lines = read_lines(ours / "poll.log")
        assert all("[DESTROY]" in ln for ln in lines)
        for flow in flows:
            assert any(f"SRC={flow.src} DST={flow.dst} " in ln for ln in lines), flow


USR2_CONF = """\
[global]
loglevel=1
stack=ct1:NFCT,ip2str1:IP2STR,print1:PRINTFLOW,emu1:LOGEMU
stack=ct1:NFCT,ip2str1:IP2STR,json1:JSON
[ct1]
netlink_socket_buffer_size=1048576
netlink_socket_buffer_maxsize=8388608
reliable=1
conntrack_acct=1
[emu1]
file="{d}/flows.log"
sync=1
[json1]
file="{d}/flows.json"
sync=1
"""


def _orig_counters(ct_line: str) -> tuple[int, int]:
    """The original direction's packets and bytes of a `conntrack -L` line."""
    m = re.search(r"packets=(\d+) bytes=(\d+)", ct_line)
    assert m, ct_line
    return int(m.group(1)), int(m.group(2))


def test_sigusr2_dumps_and_resets_counters_and_socket_options_apply(tmp_path):
    with NatTopology(fw_sysctls=CONNTRACK_SHORT_UDP_ICMP) as topo:
        topo.fw.sysctls({"net.netfilter.nf_conntrack_udp_timeout": 30,
                         "net.netfilter.nf_conntrack_udp_timeout_stream": 30})
        with UlogdProcess(topo.fw, USR2_CONF.format(d=tmp_path), tmp_path / "run",
                          binary=ULOGPY) as daemon:
            flows = topo.generate_flows(protos=("udp",))
            before = {e.orig["sport"]: e for e in conntrack_list(topo.fw)
                      if e.proto == "udp"}
            daemon.send_signal(signal.SIGUSR2)
            lines = wait_until(
                lambda: [ln for ln in read_lines(tmp_path / "flows.log") if "[UPDATE]" in ln]
                or None, timeout=10, what="UPDATE lines after SIGUSR2")
            after = {e.orig["sport"]: e for e in conntrack_list(topo.fw) if e.proto == "udp"}
            log = daemon.log_text()
        assert len(lines) == len(flows)
        for flow in flows:
            pkts, nbytes = _orig_counters(before[str(flow.sport)].line)
            assert pkts >= 1
            hit = [ln for ln in lines if f"SPT={flow.sport} DPT={flow.dport} " in ln]
            assert hit, flow
            assert f"PKTS={pkts} BYTES={nbytes} ," in hit[0]
            assert _orig_counters(after[str(flow.sport)].line) == (0, 0)  # reset by the dump
        # The kernel reports twice the requested size, as ulogd logs it.
        assert re.search(r"NFCT netlink buffer size has been set to 2097152", log), log
        assert "NFCT reliable logging has been enabled." in log
