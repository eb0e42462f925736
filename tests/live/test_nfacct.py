"""NFACCT: ulogd 2.0.8 and ulogpy on the same accounting objects and the same traffic.

Accounting objects are made with the `nfacct` tool and counted into by iptables rules
(`-m nfacct --nfacct-name`) on ICMP, ICMPv6 and UDP packets over loopback, plus one
object no rule uses and one with a name of the longest length the kernel takes.

* Counters per interval (`zerocounter=1`, `timestamp=1`): each query resets the kernel's
  counters, so two daemons in one namespace would take counts from each other.  ulogd
  and ulogpy therefore run in two namespaces made alike, and each gets the same traffic
  phase by phase; after each phase both are sent SIGUSR2 (the queries come from there:
  the poll interval is an hour).  Their GPRINT lines must be identical, apart from the
  time stamps, which each daemon reads from its own clock; the counts must be those of
  the packets the test sent in that phase.
* Cumulative counters (`zerocounter=0`), polled every second by the timer, with both
  daemons in one namespace: the last line per object must be the same for both and equal
  to the totals the test sent.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.compare import CLOCK_TOLERANCE_S, Tally, compare_json
from tests.netns import Netns, wait_until
from tests.ulogd_ref import ULOGPY, UlogdProcess, read_lines

pytestmark = [pytest.mark.live, pytest.mark.ulogd]

LONG = "n" * 25 + ".-_:x9"  # 31 characters: the kernel's longest name
OBJECTS = ("icmp4", "icmp6", "udp4", "idle", LONG)
#: (iptables command, protocol, object) for each counting rule, on OUTPUT.
RULES = (("iptables", "icmp", "icmp4"), ("ip6tables", "ipv6-icmp", "icmp6"),
         ("iptables", "udp", "udp4"), ("iptables", "udp", LONG))
PING_DATA = 56
UDP_DATA = 100
#: Per phase: IPv4 echoes, IPv6 echoes, UDP datagrams (0 in a phase: a quiet interval).
PHASES = ((3, 2, 5), (0, 0, 0), (1, 4, 0), (2, 0, 7))

UDP_SCRIPT = """\
import socket, sys
n, size = int(sys.argv[1]), int(sys.argv[2])
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.bind(("127.0.0.1", 0))
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(n):
    tx.sendto(b"x" * size, rx.getsockname())
    rx.recv(65536)
"""

ZERO_CONF = """\
[global]
loglevel=3
stack=acct1:NFACCT,gp1:GPRINT
[acct1]
pollinterval=3600
zerocounter=1
timestamp=1
[gp1]
file="{d}/deltas.log"
sync=1
"""
CUMULATIVE_CONF = """\
[global]
loglevel=3
stack=acct1:NFACCT,gp1:GPRINT
stack=acct2:NFACCT,xml1:XML
stack=acct3:NFACCT,json1:JSON
[acct1]
pollinterval=1
zerocounter=0
[acct2]
pollinterval=1
zerocounter=0
[acct3]
pollinterval=1
zerocounter=0
[json1]
file="{d}/totals.json"
sync=1
[gp1]
file="{d}/totals.log"
sync=1
[xml1]
directory="{d}/xml"
sync=1
"""


def expected(phase: tuple[int, int, int]) -> dict[str, tuple[int, int]]:
    """(packets, bytes) per object for one phase: requests and replies both leave by
    OUTPUT on loopback; UDP datagrams once each."""
    v4, v6, udp = phase
    counts = {"icmp4": (2 * v4, 2 * v4 * (20 + 8 + PING_DATA)),
              "icmp6": (2 * v6, 2 * v6 * (40 + 8 + PING_DATA)),
              "udp4": (udp, udp * (20 + 8 + UDP_DATA)), "idle": (0, 0)}
    counts[LONG] = counts["udp4"]
    return counts


def line(name: str, pkts: int, nbytes: int) -> str:
    return f"sum.name={name},sum.pkts={pkts},sum.bytes={nbytes}"


def setup_accounting(ns: Netns) -> None:
    for name in OBJECTS:
        ns.run(["nfacct", "add", name])
    for tool, proto, name in RULES:
        ns.run([tool, "-A", "OUTPUT", "-p", proto, "-m", "nfacct", "--nfacct-name", name])


def send(ns: Netns, phase: tuple[int, int, int]) -> None:
    v4, v6, udp = phase
    if v4:
        ns.run(["ping", "-q", "-c", str(v4), "-i", "0.01", "-s", str(PING_DATA), "127.0.0.1"])
    if v6:
        ns.run(["ping", "-6", "-q", "-c", str(v6), "-i", "0.01", "-s", str(PING_DATA), "::1"])
    if udp:
        ns.run([sys.executable, "-c", UDP_SCRIPT, str(udp), str(UDP_DATA)])


def skip_reason() -> str | None:
    for tool in ("nfacct", "iptables", "ip6tables", "ping"):
        if subprocess.run(["which", tool], capture_output=True).returncode:
            return f"needs the '{tool}' command"
    return None


STAMP = re.compile(r",oob\.time\.sec=(\d+),oob\.time\.usec=(\d+)$")


def split_stamp(text: str) -> tuple[str, float]:
    found = STAMP.search(text)
    assert found, f"no time stamp in {text!r}"
    return text[:found.start()], int(found.group(1)) + int(found.group(2)) / 1e6


@pytest.fixture(scope="module")
def zero_run(tmp_path_factory):
    """Both daemons in namespaces of their own, phase by phase: (ulogpy, ulogd) lines."""
    if reason := skip_reason():
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("nfacct-zero")
    with Netns("acct") as ns_ulogd, Netns("acct") as ns_ulogpy:
        for ns in (ns_ulogd, ns_ulogpy):
            setup_accounting(ns)
        theirs, ours = base / "ulogd", base / "ulogpy"
        ulogd = UlogdProcess(ns_ulogd, ZERO_CONF.format(d=theirs), theirs)
        ulogpy = UlogdProcess(ns_ulogpy, ZERO_CONF.format(d=ours), ours / "run", binary=ULOGPY)
        ours.mkdir(parents=True, exist_ok=True)
        with ulogd, ulogpy:
            for number, phase in enumerate(PHASES, 1):
                send(ns_ulogd, phase)
                send(ns_ulogpy, phase)
                for proc, d in ((ulogd, theirs), (ulogpy, ours)):
                    proc.send_signal(signal.SIGUSR2)
                    want = number * len(OBJECTS)
                    wait_until(lambda d=d, want=want: len(read_lines(d / "deltas.log")) >= want,
                               timeout=10, what=f"{want} lines in {d}/deltas.log")
            assert ulogpy.running() and ulogd.running()
            assert ulogpy.stop() == 0
            ulogd.stop()
        yield read_lines(ours / "deltas.log"), read_lines(theirs / "deltas.log")


def test_deltas_per_query_identical_to_ulogd(zero_run):
    ours, theirs = zero_run
    assert len(ours) == len(theirs) == len(PHASES) * len(OBJECTS)
    for mine, real in zip(ours, theirs, strict=True):
        (text, when), (real_text, real_when) = split_stamp(mine), split_stamp(real)
        assert text == real_text
        assert abs(when - real_when) <= CLOCK_TOLERANCE_S, (mine, real)


def test_deltas_are_the_packets_sent_in_each_phase(zero_run):
    ours, _ = zero_run
    for number, phase in enumerate(PHASES):
        got = [split_stamp(t)[0] for t in ours[number * len(OBJECTS):][:len(OBJECTS)]]
        want = expected(phase)
        assert got == [line(name, *want[name]) for name in OBJECTS], f"phase {number + 1}"


def test_one_time_stamp_per_query_and_queries_in_order(zero_run):
    ours, _ = zero_run
    stamps = [split_stamp(t)[1] for t in ours]
    per_query = [stamps[i:i + len(OBJECTS)] for i in range(0, len(stamps), len(OBJECTS))]
    assert all(len(set(q)) == 1 for q in per_query)
    assert [q[0] for q in per_query] == sorted(q[0] for q in per_query)


@pytest.fixture(scope="module")
def cumulative_run(tmp_path_factory):
    """Both daemons in one namespace, polling every second: (ulogpy's directory, ulogd's,
    the GPRINT lines of the totals sent)."""
    if reason := skip_reason():
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("nfacct-total")
    totals = {name: (0, 0) for name in OBJECTS}
    for phase in PHASES:
        for name, (pkts, nbytes) in expected(phase).items():
            totals[name] = (totals[name][0] + pkts, totals[name][1] + nbytes)
    final = [line(name, *totals[name]) for name in OBJECTS]
    with Netns("acct") as ns:
        setup_accounting(ns)
        theirs, ours = base / "ulogd", base / "ulogpy"
        for d in (theirs, ours):
            (d / "xml").mkdir(parents=True)
        ulogd = UlogdProcess(ns, CUMULATIVE_CONF.format(d=theirs), theirs)
        ulogpy = UlogdProcess(ns, CUMULATIVE_CONF.format(d=ours), ours / "run", binary=ULOGPY)
        with ulogd, ulogpy:
            for d in (theirs, ours):  # the timer's first query, before any traffic
                wait_until(lambda d=d: len(read_lines(d / "totals.log")) >= len(OBJECTS),
                           timeout=10, what=f"a first query in {d}/totals.log")
            for phase in PHASES:
                send(ns, phase)
            for d in (theirs, ours):  # both have polled since the last packet
                wait_until(lambda d=d: read_lines(d / "totals.log")[-len(OBJECTS):] == final,
                           timeout=10, what=f"final totals in {d}/totals.log")
            # XML's instance polls on a timer of its own: one more full query each
            done = {d: len(xml_objects(d)) + len(OBJECTS) for d in (theirs, ours)}
            done_json = {d: len(read_lines(d / "totals.json")) + 2 * len(OBJECTS)
                         for d in (theirs, ours)}
            for d in (theirs, ours):
                wait_until(lambda d=d: len(xml_objects(d)) >= done[d] + len(OBJECTS),
                           timeout=10, what=f"a query after the traffic in {d}/xml")
                wait_until(lambda d=d: len(read_lines(d / "totals.json")) >= done_json[d],
                           timeout=10, what=f"a query after the traffic in {d}/totals.json")
            assert ulogpy.stop() == 0
            ulogd.stop()
        yield ours, theirs, final


def xml_objects(d: Path, times: bool = False) -> list[str]:
    """The `<obj>` elements of XML's file in `d` (without their time elements)."""
    files = sorted((d / "xml").glob("ulogd-sum-*.xml"))
    if len(files) != 1:
        return []
    found = [text for text in read_lines(files[0]) if text.startswith("<obj>")]
    return found if times else [XML_TIME.sub("", text) for text in found]


XML_TIME = re.compile(r"<hour>.*</year>")
#: ulogd 2.0.8's element as observed: the packet count in <pkts>, the bytes in <bytes>.
XML_OBJ = "<obj><name>{}</name><pkts>{:020}</pkts><bytes>{:020}</bytes></obj>"


def test_xml_reference_is_what_was_sent(cumulative_run):
    """What the real ulogd writes (the reference the next test holds ulogpy to)."""
    _ours, theirs_dir, final = cumulative_run
    theirs = xml_objects(theirs_dir)
    totals = [[int(v) for v in re.findall(r"=(\d+)", text)] for text in final]
    assert theirs[-len(OBJECTS):] == [XML_OBJ.format(name, *counts)
                                      for name, counts in zip(OBJECTS, totals, strict=True)]


def test_xml_final_totals_identical_to_ulogd(cumulative_run):
    ours, theirs = (xml_objects(d, times=True) for d in cumulative_run[:2])
    assert len(ours) >= 2 * len(OBJECTS) and len(theirs) >= 2 * len(OBJECTS)
    assert [XML_TIME.sub("", t) for t in ours[-len(OBJECTS):]] == \
        [XML_TIME.sub("", t) for t in theirs[-len(OBJECTS):]]
    layout = re.compile(r"<hour>\d+</hour><min>\d\d</min><sec>\d\d</sec><wday>[1-7]</wday>"
                        r"<day>\d+</day><month>\d+</month><year>\d+</year>")
    assert all(layout.search(t) for t in ours + theirs)


def test_final_totals_identical_to_ulogd_and_to_what_was_sent(cumulative_run):
    ours_dir, theirs_dir, final = cumulative_run
    ours, theirs = read_lines(ours_dir / "totals.log"), read_lines(theirs_dir / "totals.log")
    assert ours[-len(OBJECTS):] == theirs[-len(OBJECTS):] == final


def test_json_final_records_identical_to_ulogd(cumulative_run):
    """JSON of the last query: the same keys in the same order, the same values (the
    time stamp is each daemon's clock), and the totals the test sent."""
    *dirs, final = cumulative_run
    ours, theirs = (read_lines(d / "totals.json")[-len(OBJECTS):] for d in dirs)
    tally = Tally()
    compare_json(ours, theirs, tally, "totals.json")
    assert not tally.differences, "\n".join(tally.differences)
    got = [json.loads(text) for text in ours]
    assert [f"sum.name={r['sum.name']},sum.pkts={r['sum.pkts']},sum.bytes={r['sum.bytes']}"
            for r in got] == final
    assert all("sum" not in r for r in got)  # raw data: not written, as in ulogd


def test_timer_polls_without_signals_every_object_each_time(cumulative_run):
    ours = read_lines(cumulative_run[0] / "totals.log")
    assert len(ours) % len(OBJECTS) == 0 and len(ours) >= 2 * len(OBJECTS)
    assert ours[:len(OBJECTS)] == [line(name, 0, 0) for name in OBJECTS]
    names = [text.split(",", 1)[0] for text in ours]
    assert names == [f"sum.name={name}" for name in OBJECTS] * (len(ours) // len(OBJECTS))
    counts = [[int(v) for v in re.findall(r"=(\d+)", text)] for text in ours]
    for earlier, later in zip(counts, counts[len(OBJECTS):], strict=False):
        assert later >= earlier  # cumulative: never reset


def test_ulogpy_counts_its_queries(tmp_path: Path):
    """The `queries` and `objects` counters after one SIGUSR2, logged at SIGTERM."""
    if reason := skip_reason():
        pytest.skip(reason)
    with Netns("acct") as ns:
        setup_accounting(ns)
        conf = ZERO_CONF.format(d=tmp_path) + "\n"
        with UlogdProcess(ns, conf, tmp_path / "run", binary=ULOGPY) as ulogpy:
            ulogpy.send_signal(signal.SIGUSR2)
            wait_until(lambda: len(read_lines(tmp_path / "deltas.log")) >= len(OBJECTS),
                       timeout=10, what="one query's lines")
            assert ulogpy.stop() == 0
            text = ulogpy.log_text()
    assert re.search(rf"acct1:NFACCT: emitted={len(OBJECTS)} objects={len(OBJECTS)} "
                     r"queries=1\b", text), text
