"""A socket-buffer overrun is counted, and hash mode recovers the lost DESTROYs by resync.

The daemon knows some flows from its start-up dump; it is then stopped
(SIGSTOP) while a burst of flows overflows its small
socket buffer and the table is flushed; after SIGCONT it must notice the
overrun (ENOBUFS), count it, grow its buffer up to
`netlink_socket_buffer_maxsize`, and within `netlink_resync_timeout` dump the
table so that every flow it knew of gets exactly one DESTROY record.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import time

import pytest

from tests.netns import NatTopology, conntrack_flush, wait_until
from tests.ulogd_ref import ULOGPY, UlogdProcess, read_lines

pytestmark = [pytest.mark.live]

CONF = """\
[global]
loglevel=3
stack=ct1:NFCT,ip2str1:IP2STR,print1:PRINTFLOW,emu1:LOGEMU
[ct1]
netlink_socket_buffer_size=4096
netlink_socket_buffer_maxsize=65536
netlink_resync_timeout=1
[emu1]
file="{d}/flows.log"
sync=1
"""

BURST = """
import socket, sys
dst, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
dport = int(sys.argv[4]) if len(sys.argv) > 4 else 9
fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
for port in range(first, first + count):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind(("", port))
    s.sendto(b"x", (dst, dport))
    s.close()
"""


def test_overrun_is_counted_and_resync_emits_the_lost_destroys(tmp_path):
    with NatTopology() as topo:
        # Flows alive before the daemon starts reach its hash through the start-up dump,
        # so no event about them can have been lost before the overrun we cause.
        known = 20
        topo.lan.run([sys.executable, "-c", BURST, topo.wan_ip4, "20000", str(known)])
        with UlogdProcess(topo.fw, CONF.format(d=tmp_path), tmp_path / "run",
                          binary=ULOGPY) as daemon:
            daemon.send_signal(signal.SIGSTOP)
            try:
                topo.lan.run([sys.executable, "-c", BURST, topo.wan_ip4, "30000", "400"])
                conntrack_flush(topo.fw)
            finally:
                daemon.send_signal(signal.SIGCONT)

            def destroyed_known() -> set[int]:
                ports = set()
                for line in read_lines(tmp_path / "flows.log"):
                    m = re.search(r"\[DESTROY\] ORIG: .* SPT=(\d+) DPT=9 ", line)
                    if m and 20000 <= int(m.group(1)) < 20000 + known:
                        ports.add(int(m.group(1)))
                return ports

            wait_until(lambda: len(destroyed_known()) == known, timeout=15,
                       what="a DESTROY for every flow known before the overrun")
            daemon.send_signal(signal.SIGUSR1)
            wait_until(lambda: "overruns=" in daemon.log_text(), timeout=5,
                       what="counters in the log")
        lines = read_lines(tmp_path / "flows.log")
        for port in range(20000, 20000 + known):
            assert sum(f" SPT={port} DPT=9 " in ln and "[DESTROY]" in ln for ln in lines) == 1
        counters = re.search(r"counters ct1:NFCT: (.*)", daemon.log_text()).group(1)
        assert re.search(r"overruns=[1-9]", counters), counters
        assert re.search(r"resyncs=[1-9]", counters), counters
        # The buffer grew from the kernel's 8192 (twice what was asked) towards the maximum.
        assert "we are losing events, increasing buffer size to 16384" in daemon.log_text()


EVENT_CONF = """\
[global]
loglevel=3
stack=ct1:NFCT,ip2str1:IP2STR,json1:JSON
[ct1]
hash_enable=0
event_mask=5
netlink_socket_buffer_size=65536
netlink_socket_buffer_maxsize=65536
netlink_resync_timeout=1
[json1]
file="{d}/flows.json"
sync=1
"""


def test_event_mode_resync_reports_every_connection_once(tmp_path):
    """Event mode, a small buffer: A flows start and are logged; then, the daemon stopped,
    B flows start, far more events than the buffer holds, and the A flows are deleted
    (so their DESTROYs are lost too).
    After the resync every connection the daemon knew of has exactly one NEW and one DESTROY, every
    connection alive now has exactly one NEW and no DESTROY, no event is reported twice,
    and what the overrun cost is marked ct.resync and counted.  (A connection that both
    started and ended inside the overrun leaves no trace anywhere: nobody can report it.)"""
    a, b = 30, 1500
    with NatTopology() as topo:
        with UlogdProcess(topo.fw, EVENT_CONF.format(d=tmp_path), tmp_path / "run",
                          binary=ULOGPY) as daemon:
            topo.lan.run([sys.executable, "-c", BURST, topo.wan_ip4, "20000", str(a)])
            wait_until(lambda: len(read_lines(tmp_path / "flows.json")) >= a, timeout=10,
                       what="the NEW events of the A flows")
            daemon.send_signal(signal.SIGSTOP)
            try:
                topo.lan.run([sys.executable, "-c", BURST, topo.wan_ip4, "30000", str(b),
                              "10"])
                topo.fw.run(["conntrack", "-D", "-p", "udp", "--orig-port-dst", "9"],
                            check=False)
            finally:
                daemon.send_signal(signal.SIGCONT)
            wait_until(lambda: "resyncs" in _counters(daemon), timeout=15,
                       what="a resync after the overrun", interval=0.5)
            wait_until(lambda: _counters(daemon) == _counters(daemon), timeout=5)
        recs = [json.loads(ln) for ln in read_lines(tmp_path / "flows.json")]
        events = [(r["ct.id"], r["ct.event"]) for r in recs]
        assert len(events) == len(set(events)), "an event reported twice"
        by_port: dict[int, list[int]] = {}
        for r in recs:
            by_port.setdefault(r["orig.l4.sport"], []).append(r["ct.event"])
        for port in range(20000, 20000 + a):  # started, then deleted
            assert sorted(by_port[port]) == [1, 4], (port, by_port[port])
        # A DESTROY only the resync saw names the flow exactly as its NEW did (addresses
        # and ports both ways, ids, mark), though the daemon kept no copy of that NEW.
        lost = [r for r in recs if r.get("ct.resync") and r["ct.event"] == 4]
        new_of = {r["ct.id"]: r for r in recs if r["ct.event"] == 1}
        assert len(lost) == a, len(lost)
        for r in lost:
            new = new_of[r["ct.id"]]
            same = {k for k in new if not k.startswith(("flow.", "timestamp")) and
                    ".raw." not in k and k not in ("ct.event", "ct.resync")}
            assert {k: r.get(k) for k in same} == {k: new[k] for k in same}, (r, new)
        for port in range(30000, 30000 + b):  # alive at the resync
            assert by_port[port].count(1) == 1 and 4 not in by_port[port], by_port[port]
        values = _counters(daemon)
        marked = [r for r in recs if r.get("ct.resync")]
        assert int(values["overruns"]) >= 1 and int(values["resyncs"]) >= 1
        assert len(marked) == int(values.get("resync_new", 0)) + int(
            values.get("resync_destroy", 0)) > 0


def _counters(daemon: UlogdProcess) -> dict[str, str]:
    """The NFCT counters, as the daemon logs them on SIGUSR1."""
    daemon.send_signal(signal.SIGUSR1)
    time.sleep(0.2)
    found = re.findall(r"counters ct1:NFCT: (.*)", daemon.log_text())
    return dict(item.split("=") for item in found[-1].split()) if found else {}
