"""GPRINT and OPRINT on conntrack events, ulogpy beside ulogd 2.0.8.

Both daemons read the same NEW and DESTROY events (entries made with
`conntrack -I`, IPv4 and IPv6, then flushed) in a private namespace, through
the Debian example stack `ct1:NFCT,gp1:GPRINT`, one with IP2STR and IP2HBIN
(host-order and IPv6 addresses), and `ct1:NFCT,op1:OPRINT`.  Every line must
be the same, except what each daemon reads from its own clock: GPRINT's
`timestamp=` and the start time of NEW events (the kernel stamps only
DESTROY), which must agree within `CLOCK_TOLERANCE_S`, and IP2HBIN's IPv6
values, which are a heap pointer in ulogd (spec B6).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.compare import CLOCK_TOLERANCE_S, Tally
from tests.netns import Netns, wait_until
from tests.ulogd_ref import ULOGD_BIN, ULOGPY, UlogdProcess, read_lines

pytestmark = [pytest.mark.live, pytest.mark.ulogd]

CONF = """\
[global]
loglevel=3
stack=ct1:NFCT,gp1:GPRINT
stack=ct1:NFCT,ip2str1:IP2STR,ip2hbin1:IP2HBIN,gp2:GPRINT
stack=ct1:NFCT,op1:OPRINT
[ct1]
hash_enable=0
event_mask=0x00000005
[gp1]
file="{d}/gp1.log"
sync=1
timestamp=1
[gp2]
file="{d}/gp2.log"
sync=1
[op1]
file="{d}/op1.log"
sync=1
"""
ENTRIES = (
    ("ipv4", "udp", "10.66.0.1", "10.66.0.2", ""),
    ("ipv4", "tcp", "10.66.0.1", "10.66.0.3", " --state ESTABLISHED"),
    ("ipv6", "udp", "fd00:66::1", "fd00:66::2", ""),
    ("ipv6", "tcp", "::1", "fd00:66::3", " --state SYN_SENT"),
)
#: ulogd's IP2HBIN gives a pointer for IPv6: GPRINT prints 4 bytes of a heap address.
HBIN = ("orig.ip.hsaddr", "orig.ip.hdaddr", "reply.ip.hsaddr", "reply.ip.hdaddr")
#: ulogd's NFCT gives `ct` (the conntrack object) with every event; ulogpy's does not yet.
NFCT_CT = "ct"


def pairs(text: str, sep: str) -> list[tuple[str, str]]:
    return [tuple(item.split("=", 1)) for item in text.split(sep) if item]  # type: ignore[misc]


def gprint_records(path: Path) -> list[list[tuple[str, str]]]:
    return [pairs(line, ",") for line in read_lines(path)]


def oprint_records(path: Path) -> list[list[tuple[str, str]]]:
    blocks = path.read_text().split("===>PACKET BOUNDARY\n")
    assert blocks[0] == "", "the dump starts with a boundary line"
    return [pairs(block, "\n") for block in blocks[1:]]


def compare(name: str, ours: list, theirs: list, tally: Tally) -> None:
    tally.same(f"{name}: records", len(ours), len(theirs))
    for i, (a, b) in enumerate(zip(ours, theirs, strict=False)):
        # `ct` is checked on its own: test_oprint_shows_nfcts_ct_key
        a, b = ([(k, v) for k, v in rec if k != NFCT_CT] for rec in (a, b))
        tally.same(f"{name}[{i}] keys", [k for k, _ in a], [k for k, _ in b])
        new = ("ct.event", "1") in b
        ipv6 = ("oob.family", "10") in b
        for (key, va), (_, vb) in zip(a, b, strict=False):
            if ipv6 and key in HBIN:
                continue
            if key == "timestamp":
                ta = time.mktime(time.strptime(va, "%Y/%m/%d-%H:%M:%S"))
                tb = time.mktime(time.strptime(vb, "%Y/%m/%d-%H:%M:%S"))
                tally.close(f"{name}[{i}] timestamp", ta, tb, CLOCK_TOLERANCE_S)
            elif new and key == "flow.start.sec":
                tally.close(f"{name}[{i}] {key}", int(va), int(vb), CLOCK_TOLERANCE_S)
            elif not (new and key == "flow.start.usec"):
                tally.same(f"{name}[{i}] {key}", va, vb)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    """Both daemons on the same events; the directory with `ulogd/` and `ulogpy/`."""
    tmp_path = tmp_path_factory.mktemp("gprint-nfct")
    with Netns("gprint") as ns:
        ns.sysctl("net.netfilter.nf_conntrack_timestamp", 1)
        daemons = {}
        for who, binary in (("ulogd", ULOGD_BIN), ("ulogpy", ULOGPY)):
            d = tmp_path / who
            d.mkdir()
            daemons[who] = UlogdProcess(ns, CONF.format(d=d), d / "run", binary=binary)
        try:
            for daemon in daemons.values():
                daemon.start()
            for i, (_family, proto, src, dst, extra) in enumerate(ENTRIES):
                ns.run(["sh", "-c", f"conntrack -I -p {proto} -s {src} -d {dst} "
                        f"--sport {5000 + i} --dport 80{extra} -t 60"])
            ns.run(["conntrack", "-F"])
            expected = 2 * len(ENTRIES)
            for who in daemons:
                for name in ("gp1.log", "gp2.log"):
                    wait_until(lambda p=tmp_path / who / name: len(read_lines(p)) >= expected,
                               10, what=f"{expected} lines in {who}/{name}")
                wait_until(lambda p=tmp_path / who / "op1.log": p.exists() and
                           p.read_text().count("===>PACKET BOUNDARY") >= expected
                           and p.read_text().endswith("\n"), 10, what=f"{who}'s OPRINT dump")
        finally:
            for daemon in daemons.values():
                daemon.stop()
    return tmp_path


def test_gprint_and_oprint_of_conntrack_events_match_ulogd(outputs: Path) -> None:
    tmp_path = outputs
    ours, theirs = tmp_path / "ulogpy", tmp_path / "ulogd"
    tally = Tally()
    for name in ("gp1.log", "gp2.log"):
        compare(name, gprint_records(ours / name), gprint_records(theirs / name), tally)
    compare("op1.log", oprint_records(ours / "op1.log"), oprint_records(theirs / "op1.log"),
            tally)
    print(tally)
    assert not tally.differences, "\n".join(tally.differences)
    gp1 = read_lines(ours / "gp1.log")
    assert any(",orig.ip.saddr=0.0.0.0," in line for line in gp1)  # ::1 as ulogd shows it
    assert any(",orig.ip.saddr=10.66.0.1," in line for line in gp1)
    assert tally.compared > 400


def test_oprint_shows_nfcts_ct_key(outputs: Path) -> None:
    """ulogd's NFCT gives its conntrack object as `ct` (raw) with every event: OPRINT
    prints `ct=default` as the last line of each block (JSON and GPRINT skip raw keys)."""
    for who in ("ulogd", "ulogpy"):
        blocks = oprint_records(outputs / who / "op1.log")
        assert blocks and all(block[-1] == ("ct", "default") for block in blocks), who
