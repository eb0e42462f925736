"""ulogd 2.0.8 and ulogpy side by side: XML (flows and packets) and NACCT.

Both daemons run in the firewall namespace of a lan/fw/wan topology with
masquerading, conntrack accounting and time stamps, with the same stacks:
flows in hash mode and in event mode (NEW and DESTROY) to XML, packets of an
nft `log group` rule to XML (each packet goes to two groups, one per daemon),
NEW flows to XML on standard output, and flows through IP2STR to NACCT.  TCP,
UDP and ICMP flows over IPv4 and IPv6 cross the NAT; one ping is too large for
ulogd's 4 KiB element buffer.  Half-way, both daemons get SIGHUP, which starts
a new XML file.

A separate namespace has NFACCT objects that an iptables `nfacct` match counts,
polled by both daemons into XML sum files.

Files must be byte-identical, apart from what each daemon reads from its own
clock: the `<when>` element (the time of printing) and the time in each file's
name, which may differ by at most `CLOCK_TOLERANCE_S`.
"""

from __future__ import annotations

import re
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.compare import CLOCK_TOLERANCE_S
from tests.netns import NatTopology, Netns, conntrack_flush, wait_until
from tests.ulogd_ref import ULOGPY, UlogdProcess, read_lines

pytestmark = [pytest.mark.live, pytest.mark.ulogd]

GROUPS = {"ulogd": 31, "ulogpy": 41}
CONF = """\
[global]
loglevel=3
stack=ct1:NFCT,xml1:XML
stack=ct2:NFCT,xml2:XML
stack=log1:NFLOG,xml3:XML
stack=ct3:NFCT,xml4:XML
stack=ct1:NFCT,ip2str1:IP2STR,nacct1:NACCT
stack=ct4:NFCT,xml5:XML
# the default: hash mode, one element per flow at its end
[ct1]
# every NEW and DESTROY as it comes
[ct2]
hash_enable=0
event_mask=5
# NEW only, to standard output
[ct3]
hash_enable=0
event_mask=1
# polling mode: table dumps, an element when a flow is gone
[ct4]
pollinterval=1
[log1]
group={group}
[xml1]
directory="{d}/hash"
sync=1
[xml2]
directory="{d}/events"
sync=1
[xml3]
directory="{d}/packets"
sync=1
[xml4]
stdout=1
directory="{d}/stdout"
sync=1
[xml5]
directory="{d}/polled"
sync=1
[nacct1]
file="{d}/nacct.log"
sync=1
"""
XML_DIRS = ("hash", "events", "packets", "polled")
#: Where ulogd writes the stdout stack after SIGHUP (its bug: ulogpy stays on stdout).
STDOUT_DIR = "stdout"
NAME_RX = re.compile(r"^ulogd-(flow|pkt)-(\d{2})(\d{2})(\d{4})-(\d{2})(\d{2})(\d{2})\.xml$")
#: What each daemon's own table dump reads from the kernel's clock or state at that
#: moment, in polling mode: the age the printer counts up to its clock (no end time),
#: the seconds left before the flow times out, and the reference count (which the
#: other daemon's dump at the same moment raises by one).
AGED_RX = re.compile(r"<(deltatime|timeout|use)>(\d+)</\1>")
#: The time of printing: in `<when>` for flows and packets, bare in sums.
WHEN_RX = re.compile(
    r"(?:<when>)?<hour>(\d+)</hour><min>(\d\d)</min><sec>(\d\d)</sec><wday>(\d)</wday>"
    r"<day>(\d+)</day><month>(\d+)</month><year>(\d{4})</year>(?:</when>)?")
#: A ping payload whose packet, in hex, does not fit ulogd's 4096-byte element buffer.
BIG_PING = 2100


def _ruleset() -> str:
    logs = " ".join(f'log prefix "FWD new: " group {g}' for g in GROUPS.values())
    return ("table inet ulogpy_xml {\n  chain forward_log {\n"
            "    type filter hook forward priority 0; policy accept;\n"
            "    meta l4proto udp ct mark set 0x2a\n"
            f"    ct state new {logs}\n  }}\n}}\n")


def _traffic(topo: NatTopology) -> int:
    flows = topo.generate_flows()
    topo.lan.run(["ping", "-n", "-c", "1", "-W", "2", "-s", str(BIG_PING),
                  topo.wan_ip(4)])
    # Polling mode writes a flow once a dump no longer finds it, so every flow must be
    # in one dump of each daemon first: three poll intervals leave room for a loaded
    # machine (a dump that comes late finds nothing to report, and the test waits).
    time.sleep(3.0)
    conntrack_flush(topo.fw)
    return len(flows) + 1


def _files(d: Path) -> list[Path]:
    return sorted(d.iterdir(), key=lambda p: p.stat().st_mtime_ns)


def _elements(d: Path) -> int:
    return sum(1 for f in d.iterdir() for line in read_lines(f) if line.startswith("<flow>")
               or line.startswith("<log>"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Both daemons, two rounds of traffic with SIGHUP between; (ulogpy dir, ulogd dir)."""
    base = tmp_path_factory.mktemp("xml-nacct")
    with NatTopology() as topo:
        topo.fw.sysctls({"net.netfilter.nf_conntrack_acct": 1,
                         "net.netfilter.nf_conntrack_timestamp": 1})
        topo.fw.nft(_ruleset())
        dirs = {who: base / who for who in GROUPS}
        for d in dirs.values():
            for sub in (*XML_DIRS, STDOUT_DIR):
                (d / sub).mkdir(parents=True)
        ulogd = UlogdProcess(topo.fw, CONF.format(d=dirs["ulogd"], group=GROUPS["ulogd"]),
                             dirs["ulogd"] / "run")
        ulogpy = UlogdProcess(topo.fw, CONF.format(d=dirs["ulogpy"], group=GROUPS["ulogpy"]),
                              dirs["ulogpy"] / "run", binary=ULOGPY)
        with ulogd, ulogpy:
            for round_ in (1, 2):
                flows = _traffic(topo)
                for d in dirs.values():
                    wait_until(lambda d=d, n=flows * round_:
                               len(read_lines(d / "nacct.log")) >= n,
                               timeout=15, what=f"{flows * round_} NACCT lines in {d}")
                    wait_until(lambda d=d, n=flows * round_: _elements(d / "events") >= 2 * n,
                               timeout=15, what=f"NEW and DESTROY elements in {d}")
                    wait_until(lambda d=d, n=flows * round_: _elements(d / "polled") >= n,
                               timeout=15, what=f"polled flows in {d}")
                if round_ == 1:
                    time.sleep(1.1)  # the next file gets a name of its own
                    ulogd.send_signal(signal.SIGHUP)
                    ulogpy.send_signal(signal.SIGHUP)
                    time.sleep(1.1)
            time.sleep(1.5)  # the packet group's last batch
            assert ulogpy.stop() == 0
            ulogd.stop()
        yield dirs["ulogpy"], dirs["ulogd"], ulogpy, ulogd


def _when(match: re.Match) -> datetime:
    hour, minute, sec, _wday, day, month, year = (int(g) for g in match.groups())
    return datetime(year, month, day, hour, minute, sec)


def _flow_id(line: str) -> int:
    found = re.search(r"<id>(\d+)</id>", line)
    return int(found.group(1)) if found else -1


def _compare_lines(ours: list[str], theirs: list[str], what: str, aged: bool = False) -> int:
    """Lines equal once `<when>` is cut out, and each `<when>` within the tolerance
    (with `aged`, the `<deltatime>` too)."""
    assert len(ours) == len(theirs), f"{what}: {len(ours)} lines, ulogd {len(theirs)}"
    if aged:  # vanished flows come in the order of each daemon's table, matched by id
        ours = ours[:2] + sorted(ours[2:-1], key=_flow_id) + ours[-1:]
        theirs = theirs[:2] + sorted(theirs[2:-1], key=_flow_id) + theirs[-1:]
    for n, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        if aged:
            da, db = AGED_RX.findall(a), AGED_RX.findall(b)
            assert [t for t, _ in da] == [t for t, _ in db], f"{what} line {n + 1}"
            assert all(abs(int(x) - int(y)) <= CLOCK_TOLERANCE_S
                       for (_, x), (_, y) in zip(da, db, strict=True)), f"{a}\n{b}"
            a, b = AGED_RX.sub(r"<\1/>", a), AGED_RX.sub(r"<\1/>", b)
        assert WHEN_RX.sub("<when/>", a) == WHEN_RX.sub("<when/>", b), \
            f"{what} line {n + 1}:\nulogpy: {a}\nulogd:  {b}"
        wa, wb = WHEN_RX.search(a), WHEN_RX.search(b)
        assert (wa is None) == (wb is None), f"{what} line {n + 1}: <when> in one only"
        if wa is not None and wb is not None:
            now = datetime.now()
            for found in (wa, wb):
                assert abs((now - _when(found)).total_seconds()) < 600, found.group(0)
                assert found.group(4) == str(_when(found).isoweekday() % 7 + 1)
            assert abs((_when(wa) - _when(wb)).total_seconds()) <= CLOCK_TOLERANCE_S
    return len(ours)


def _name_time(path: Path) -> datetime:
    m = NAME_RX.match(path.name)
    assert m, path.name
    day, month, year, hour, minute, sec = (int(g) for g in m.groups()[1:])
    return datetime(year, month, day, hour, minute, sec)


@pytest.mark.parametrize("sub", XML_DIRS)
def test_xml_files_identical_and_sighup_starts_a_new_one(run, sub: str) -> None:
    ours, theirs, _ulogpy, _ulogd = run
    our_files, their_files = _files(ours / sub), _files(theirs / sub)
    assert len(their_files) == 2, their_files  # SIGHUP: a second file
    assert len(our_files) == 2, our_files
    compared = 0
    for a, b in zip(our_files, their_files, strict=True):
        assert NAME_RX.match(a.name).group(1) == NAME_RX.match(b.name).group(1)
        assert abs((_name_time(a) - _name_time(b)).total_seconds()) <= CLOCK_TOLERANCE_S
        assert a.read_bytes().endswith(b"\n")
        compared += _compare_lines(read_lines(a), read_lines(b), f"{sub}/{a.name}",
                                   aged=sub == "polled")
    print(f"{sub}: {compared} lines identical")
    if sub in ("hash", "polled"):  # nft sets the mark of UDP flows; the kernel reports it
        assert any("<mark>42</mark>" in line for f in our_files for line in read_lines(f))
    root = "packet" if sub == "packets" else "conntrack"
    for f in our_files:
        lines = read_lines(f)
        assert lines[:2] == ['<?xml version="1.0" encoding="utf-8"?>', f"<{root}>"]
        assert lines[-1] == f"</{root}>"
        assert len(lines) > 4


def test_big_packet_is_left_out_as_ulogd_leaves_it_out_and_counted(run) -> None:
    """The big ping's packet does not fit ulogd's element buffer: neither file has it
    (the files are identical), and ulogpy counts it, once per round."""
    ours, _theirs, ulogpy, _ulogd = run
    packets = [line for f in _files(ours / "packets") for line in read_lines(f)
               if line.startswith("<log>")]
    assert len(packets) == 12  # 6 small flows' first packets, twice
    assert all(len(p) <= 4095 for p in packets)
    assert re.search(r"counters xml3:XML: .*oversized=2", ulogpy.log_text()), ulogpy.log_text()


def test_xml_on_stdout_identical_and_kept_after_sighup(run) -> None:
    """Before SIGHUP both write to standard output.  After it ulogd 2.0.8 writes to a
    file in `directory` (its reopen forgets `stdout`); ulogpy stays on standard output,
    with a new document that holds what ulogd's file holds."""
    ours, theirs, ulogpy, ulogd = run
    mine = [ln for ln in ulogpy.output_text().split("\n") if ln.startswith("<")]
    first = [ln for ln in ulogd.output_text().split("\n") if ln.startswith("<")]
    assert len(first) > 4 and first[-1] == "</conntrack>"
    _compare_lines(mine[:len(first)], first, "stdout before SIGHUP")
    (after,) = _files(theirs / STDOUT_DIR)
    assert NAME_RX.match(after.name).group(1) == "flow"
    _compare_lines(mine[len(first):], read_lines(after), "stdout after SIGHUP")
    assert not list((ours / STDOUT_DIR).iterdir())


def test_nacct_lines_identical(run) -> None:
    ours, theirs, _ulogpy, _ulogd = run
    mine, expected = read_lines(ours / "nacct.log"), read_lines(theirs / "nacct.log")
    assert len(expected) >= 14
    assert mine == expected
    protos = {line.split("\t")[1] for line in mine}
    assert {"1", "6", "17", "58"} <= protos


# ------------------------------------------------------------------ accounting sums

ACCT_CONF = """\
[global]
loglevel=3
stack=acct1:NFACCT,xml1:XML
[acct1]
pollinterval=1
zerocounter=0
[xml1]
directory="{d}"
sync=1
"""
SUM_RX = re.compile(r"^<obj><name>(\w+)</name><pkts>(\d{20})</pkts><bytes>(\d{20})</bytes>"
                    r"<hour>\d+</hour><min>\d\d</min><sec>\d\d</sec><wday>\d</wday>"
                    r"<day>\d+</day><month>\d+</month><year>\d{4}</year></obj>$")


def test_sums_identical(tmp_path: Path) -> None:
    """NFACCT objects counted by an iptables `nfacct` match, polled by both daemons
    without reset (so that neither takes the other's counts): the same elements, as
    many polls as each made (once the counts settled)."""
    dirs = {who: tmp_path / who for who in GROUPS}
    for d in dirs.values():
        d.mkdir()
    with Netns("acct") as ns:
        ns.ip("link", "set", "lo", "up")
        for name in ("icmp_out", "unused"):
            ns.run(["nfacct", "add", name])
        ns.run(["iptables", "-A", "OUTPUT", "-p", "icmp", "-m", "nfacct",
                "--nfacct-name", "icmp_out"])
        ns.run(["ping", "-n", "-c", "3", "-i", "0.2", "127.0.0.1"])
        ulogd = UlogdProcess(ns, ACCT_CONF.format(d=dirs["ulogd"]), dirs["ulogd"] / "run")
        ulogpy = UlogdProcess(ns, ACCT_CONF.format(d=dirs["ulogpy"]), dirs["ulogpy"] / "run",
                              binary=ULOGPY)
        with ulogd, ulogpy:
            for d in dirs.values():
                wait_until(lambda d=d: sum(1 for f in d.glob("*.xml")
                                           for ln in read_lines(f) if SUM_RX.match(ln)) >= 4,
                           timeout=10, what=f"two polls in {d}")
            assert ulogpy.stop() == 0
            ulogd.stop()
    docs = {who: read_lines(next(d.glob("ulogd-sum-*.xml"))) for who, d in dirs.items()}
    for lines in docs.values():
        assert lines[:2] == ['<?xml version="1.0" encoding="utf-8"?>', "<sum>"]
        assert lines[-1] == "</sum>"
    elements = {who: [ln for ln in lines if ln.startswith("<obj>")]
                for who, lines in docs.items()}
    mine, theirs = elements["ulogpy"], elements["ulogd"]
    n = min(len(mine), len(theirs))
    assert n >= 4
    _compare_lines(mine[:n], theirs[:n], "sums")  # the same objects, in the same order
    counts = {SUM_RX.match(ln).groups() for ln in mine}
    # 3 echo requests and their replies, 84 bytes each, all through lo's OUTPUT
    assert ("icmp_out", f"{6:020}", f"{6 * 84:020}") in counts
    assert ("unused", f"{0:020}", f"{0:020}") in counts
