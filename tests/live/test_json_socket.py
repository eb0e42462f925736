"""JSON's socket modes (unix, udp, tcp), live, against ulogd 2.0.8 and under stress.

Conntrack events come from `conntrack -I`/`-F` in a private namespace (NFCT
-> IP2STR -> JSON); the peers are sockets this test opens inside that
namespace.  ulogd and ulogpy, side by side on the same events, must put the
same records on the wire (one datagram per record for udp, a stream of
lines for unix and tcp).  Then what ulogd does not do (spec O3): a stalled
tcp peer costs counted drops on that output only, while the file output of
the same daemon keeps up; a peer that is not there at start-up is not fatal
and gets its records once it listens; SIGHUP reconnects.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.compare import Tally, compare_json
from tests.netns import Netns, wait_until
from tests.streampeer import StreamPeer
from tests.ulogd_ref import ULOGD_BIN, ULOGPY, UlogdProcess, read_lines

pytestmark = [pytest.mark.live]

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def inside(ns: Netns):
    """Sockets created in this block live in `ns` (this thread only; switched back after)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns.name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns into the test namespace failed")
        try:
            yield
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:  # pragma: no cover - would be fatal
                os._exit(99)
    finally:
        os.close(own)
        os.close(target)


class DatagramPeer:
    """A udp socket keeping every datagram as it came."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.05)
        self.datagrams: list[bytes] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.datagrams.append(self.sock.recv(65535))
            except TimeoutError:
                continue

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.sock.close()


def conntrack_events(ns: Netns, first: int, count: int, proto: str = "udp") -> None:
    """`count` NEW events (entries inserted from userspace), sport `first`... ."""
    state = " --state ESTABLISHED" if proto == "tcp" else ""
    ns.run(["sh", "-c",
            f"for p in $(seq {first} {first + count - 1}); do conntrack -I -p {proto} "
            f"-s 10.77.0.1 -d 10.77.0.2 --sport $p --dport 53{state} -t 60 "
            ">/dev/null 2>&1 || exit 1; done"])


def flush(ns: Netns) -> None:
    """DESTROY events for every entry."""
    ns.run(["conntrack", "-F"])


def counters_of(daemon: UlogdProcess, instance: str) -> dict[str, int]:
    """The instance's counters, from the line SIGUSR1 makes ulogpy log."""
    mark = len(daemon.log_text())
    daemon.send_signal(signal.SIGUSR1)
    rx = re.compile(rf"counters {re.escape(instance)}: (.*)")
    line = wait_until(lambda: rx.search(daemon.log_text()[mark:]), 5,
                      what=f"counters of {instance}")
    return {k: int(v) for k, v in (item.split("=") for item in line.group(1).split())
            if v.isdigit()}


# -- the same bytes as ulogd ----------------------------------------------------------

MODES_CONF = """\
[global]
loglevel=3
stack=ct1:NFCT,ip2str1:IP2STR,j1:JSON
stack=ct1:NFCT,ip2str1:IP2STR,j2:JSON
stack=ct1:NFCT,ip2str1:IP2STR,j3:JSON
[ct1]
hash_enable=0
event_mask=0x00000005
[j1]
mode="unix"
file="{d}/json.sock"
[j2]
mode="UDP"
host="127.0.0.1"
port="{udp}"
timestamp=0
[j3]
mode="tcp"
host="localhost"
port="{tcp}"
eventv1=1
"""
PORTS = {"ulogd": (20001, 20002), "ulogpy": (20011, 20012)}


@pytest.mark.ulogd
def test_socket_modes_put_ulogds_records_on_the_wire(tmp_path: Path) -> None:
    with Netns("jsock") as ns:
        ns.sysctl("net.netfilter.nf_conntrack_timestamp", 1)
        peers: dict[str, tuple] = {}
        daemons = []
        for who in ("ulogd", "ulogpy"):
            d = tmp_path / who
            d.mkdir()
            udp, tcp = PORTS[who]
            unix = StreamPeer(socket.AF_UNIX, str(d / "json.sock")).serve()
            with inside(ns):
                peers[who] = (unix, DatagramPeer(udp), StreamPeer(
                    socket.AF_INET, ("127.0.0.1", tcp)).serve())
            conf = MODES_CONF.format(d=d, udp=udp, tcp=tcp)
            daemons.append(UlogdProcess(ns, conf, d / "run",
                                        binary=ULOGPY if who == "ulogpy" else ULOGD_BIN))
        try:
            for daemon in daemons:
                daemon.start()
            conntrack_events(ns, 1000, 3)
            conntrack_events(ns, 2000, 2, proto="tcp")
            flush(ns)
            expected = 10  # NEW and DESTROY of 5 entries
            for unix, udp, tcp in peers.values():
                wait_until(lambda u=unix, d=udp, t=tcp: len(u.lines()) >= expected
                           and len(d.datagrams) >= expected and len(t.lines()) >= expected,
                           10, what=f"{expected} records on each socket")
            for daemon in daemons:
                daemon.stop()
        finally:
            for daemon in daemons:
                daemon.stop()
            for group in peers.values():
                for peer in group:
                    peer.close()
    ours, theirs = peers["ulogpy"], peers["ulogd"]
    for name, pos in (("unix", 0), ("tcp", 2)):
        assert ours[pos].connections == theirs[pos].connections == 1, name
    # udp: one datagram per record, each ending in its newline, nothing else
    for datagrams in (ours[1].datagrams, theirs[1].datagrams):
        assert all(d.endswith(b"}\n") and d.count(b"\n") == 1 for d in datagrams)
    tally = Tally()
    clocked = {1: {"flow.start"}}  # NEW events carry no kernel time: each daemon's clock
    compare_json(ours[0].lines(), theirs[0].lines(), tally, "unix", clocked)
    compare_json([d.decode()[:-1] for d in ours[1].datagrams],
                 [d.decode()[:-1] for d in theirs[1].datagrams], tally, "udp", clocked)
    compare_json(ours[2].lines(), theirs[2].lines(), tally, "tcp", clocked)
    assert not tally.differences, "\n".join(tally.differences)
    assert tally.compared > 300
    # and byte for byte where no clock is involved (udp has timestamp=0): DESTROY records
    destroys = [[d for d in group[1].datagrams if b'"ct.event": 4' in d]
                for group in (ours, theirs)]
    assert len(destroys[0]) == 5 and destroys[0] == destroys[1]


# -- never blocked by a peer ------------------------------------------------------------

STALL_CONF = """\
[global]
loglevel=3
stack=ct1:NFCT,ip2str1:IP2STR,j1:JSON
stack=ct1:NFCT,ip2str1:IP2STR,j2:JSON
[ct1]
hash_enable=0
event_mask=0x00000005
[j1]
mode="tcp"
host="127.0.0.1"
port="20100"
queue_size=20
timestamp=0
[j2]
file="{d}/flows.json"
sync=1
timestamp=0
"""


def test_stalled_tcp_peer_costs_drops_not_the_file_output(tmp_path: Path) -> None:
    total = 2 * 150
    with Netns("jstall") as ns:
        ns.sysctls({"net.ipv4.tcp_rmem": "4096 4096 4096", "net.ipv4.tcp_wmem": "4096 4096 4096"})
        with inside(ns):
            peer = StreamPeer(socket.AF_INET, ("127.0.0.1", 20100), rcvbuf=4096)  # never reads
        daemon = UlogdProcess(ns, STALL_CONF.format(d=tmp_path), tmp_path / "run", binary=ULOGPY)
        try:
            daemon.start()
            conntrack_events(ns, 3000, total // 2)
            flush(ns)
            # the file output of the same daemon gets every record, at once
            files = wait_until(lambda: len(read_lines(tmp_path / "flows.json")) >= total
                               and read_lines(tmp_path / "flows.json"), 15,
                               what=f"{total} records in the file")
            stalled = counters_of(daemon, "j1:JSON")
            assert stalled.get("dropped", 0) > 0, stalled
            # what reached the peer, what waits for it, what was dropped: nothing else
            assert stalled.get("written", 0) + stalled["dropped"] <= total, stalled
            assert counters_of(daemon, "j2:JSON").get("written") == total
            # the peer wakes up: it gets whole records in order, ending with the newest
            peer.serve()
            last = files[-1]
            wait_until(lambda: peer.lines() and peer.lines()[-1] == last, 10,
                       what="the newest record at the woken peer")
            got = peer.lines()
            after = counters_of(daemon, "j1:JSON")
            assert len(got) + after["dropped"] == total
            assert after["written"] == len(got)  # written: reached the peer
            it = iter(files)
            assert all(line in it for line in got), "not the file's records in the file's order"
            assert all(json.loads(line)["dvc"] == "Netfilter" for line in got)
            t0 = time.monotonic()
            assert daemon.stop() == 0
            assert time.monotonic() - t0 < 5
            log = daemon.log_text()
        finally:
            daemon.stop()
            peer.close()
    assert log.count("output too slow, dropping records") == 1  # once, not per record


LATE_CONF = """\
[global]
loglevel=3
stack=ct1:NFCT,ip2str1:IP2STR,j1:JSON
stack=ct1:NFCT,ip2str1:IP2STR,j2:JSON
stack=ct1:NFCT,ip2str1:IP2STR,j3:JSON
[ct1]
hash_enable=0
event_mask=0x00000005
[j1]
mode="tcp"
port="20200"
timestamp=0
[j2]
mode="unix"
file="{d}/late.sock"
timestamp=0
[j3]
file="{d}/flows.json"
sync=1
timestamp=0
"""


def test_peers_absent_at_start_get_the_records_once_they_listen(tmp_path: Path) -> None:
    with Netns("jlate") as ns:
        daemon = UlogdProcess(ns, LATE_CONF.format(d=tmp_path), tmp_path / "run", binary=ULOGPY)
        tcp = unix = None
        try:
            daemon.start()  # ulogd would drop both stacks here (spec 4.13); ulogpy runs
            conntrack_events(ns, 4000, 2)  # queued: nobody listens yet
            wait_until(lambda: len(read_lines(tmp_path / "flows.json")) >= 2, 10,
                       what="the first records in the file")
            with inside(ns):
                tcp = StreamPeer(socket.AF_INET, ("127.0.0.1", 20200)).serve()
            unix = StreamPeer(socket.AF_UNIX, str(tmp_path / "late.sock")).serve()
            conntrack_events(ns, 4100, 2)
            flush(ns)
            wait_until(lambda: len(read_lines(tmp_path / "flows.json")) >= 8, 10,
                       what="8 records in the file")
            files = read_lines(tmp_path / "flows.json")
            for peer in (tcp, unix):
                wait_until(lambda p=peer: len(p.lines()) >= 8, 15,
                           what="the queued and the new records at the late peer")
                assert peer.lines() == files  # same options: the file's bytes, in order
            # SIGHUP: a new connection, records after it arrive on it
            daemon.send_signal(signal.SIGHUP)
            wait_until(lambda: tcp.connections == 2 and unix.connections == 2, 10,
                       what="the reconnections after SIGHUP")
            conntrack_events(ns, 4200, 1)
            wait_until(lambda: len(tcp.lines()) == 9 and len(unix.lines()) == 9, 10,
                       what="the record sent after SIGHUP")
            assert daemon.stop() == 0
            log = daemon.log_text()
        finally:
            daemon.stop()
            for peer in (tcp, unix):
                if peer is not None:
                    peer.close()
    for ep in ("tcp:127.0.0.1:20200", f"unix:{tmp_path}/late.sock"):
        warned = [ln for ln in log.splitlines() if f"can't connect to {ep}" in ln]
        assert len(warned) == 1, log  # once for the whole outage, however many retries
        assert re.search(rf"{re.escape(ep)} takes records again after [\d.]+ s", log), log
    assert "Connection refused" in log and "No such file or directory" in log
    assert log.count("JSON: reopening socket") == 2
