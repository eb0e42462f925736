"""NFLOG input, live: ulogd 2.0.8 and ulogpy on the same logged packets.

Every nft rule in the firewall namespace logs each packet to four groups,
as four statements of one rule: ulogd reads groups 1 and 3, ulogpy 2 and 4,
with the same stacks (NFLOG into JSON, which prints every integer and string
key; group 1/2 also shared by a second stack, and asking for conntrack).  Forwarded, incoming,
locally generated and loopback packets, IPv4 and IPv6, with and without
prefix, with a mark.  Records must have the same keys in the same order with
the same values; times the kernel did not stamp (locally generated packets)
are each daemon's clock, compared within `CLOCK_TOLERANCE_S`.

Also: a group held by another process (the real ulogd) is refused naming
it; packets the kernel drops while the daemon is stopped are counted exactly.
"""

from __future__ import annotations

import json
import re
import signal
import sys
from datetime import datetime
from pathlib import Path

import pytest

from tests.compare import CLOCK_TOLERANCE_S, Tally
from tests.netns import NatTopology, Netns, ping, wait_until
from tests.ulogd_ref import ULOGPY, UlogdProcess, read_lines

pytestmark = [pytest.mark.live]

CONF = """\
[global]
loglevel=3
stack=log1:NFLOG,json1:JSON
stack=log1:NFLOG,json1b:JSON
stack=log3:NFLOG,json3:JSON
stack=log1:NFLOG,op1:OPRINT
stack=log3:NFLOG,gp3:GPRINT
[log1]
group={g1}
attach_conntrack=1
[log3]
group={g3}
seq_local=1
seq_global=1
numeric_label=7
netlink_qthreshold=2
netlink_qtimeout=5
netlink_socket_buffer_size=100000
netlink_socket_buffer_maxsize=1000000
[json1]
file="{d}/plain.json"
sync=1
[json1b]
file="{d}/shared.json"
sync=1
[json3]
file="{d}/seq.json"
sync=1
[op1]
file="{d}/plain.oprint"
sync=1
[gp3]
file="{d}/seq.gprint"
sync=1
"""
FILES = ("plain.json", "shared.json", "seq.json", "plain.oprint", "seq.gprint")
LOG4 = " ".join(f'log group {g} prefix "{{p}}"' for g in (1, 2, 3, 4))
LOG4_NOPREFIX = " ".join(f"log group {g}" for g in (1, 2, 3, 4))
RULES = f"""
table inet ulogpy_log {{
    chain forward_log {{
        type filter hook forward priority filter; policy accept;
        udp dport 6001 meta mark set 0x5 {LOG4.format(p="fwd ")}
    }}
    chain input_log {{
        type filter hook input priority filter; policy accept;
        icmp type echo-request {LOG4_NOPREFIX}
        icmpv6 type echo-request {LOG4_NOPREFIX}
        iifname "lo" udp dport 6004 {LOG4.format(p="lo ")}
    }}
    chain output_log {{
        type filter hook output priority filter; policy accept;
        udp dport 6003 {LOG4.format(p="out ")}
    }}
}}
"""
SEND = """
import socket, sys
for dst in sys.argv[2:]:
    fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.sendto(b"ulogpy" * 5, (dst, int(sys.argv[1])))
"""
# Keeps kernel receive time stamps on (they are global and off until some socket asks),
# so every received packet carries one and both daemons must report it identically.
STAMPS = """
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_TIMESTAMP", 29), 1)
time.sleep(120)
"""
PACKETS = 8  # per group: 2 forwarded, 2 pings, 2 sent by fw, 2 over loopback


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Both daemons on one traffic mix; (ulogpy dir, ulogd dir, ulogpy log, ulogd log)."""
    base = tmp_path_factory.mktemp("nflog-diff")
    ours_dir, theirs_dir = base / "ulogpy", base / "ulogd"
    ours_dir.mkdir()
    theirs_dir.mkdir()
    with NatTopology() as topo:
        fw = topo.fw
        fw.popen([sys.executable, "-c", STAMPS])
        fw.nft(RULES)
        ulogd = UlogdProcess(fw, CONF.format(g1=1, g3=3, d=theirs_dir), theirs_dir)
        ulogpy = UlogdProcess(fw, CONF.format(g1=2, g3=4, d=ours_dir), ours_dir / "run",
                              binary=ULOGPY)
        with ulogd, ulogpy:
            topo.lan.run([sys.executable, "-c", SEND, "6001", topo.wan_ip4, topo.wan_ip6])
            ping(topo.lan, topo.fw_lan_ip4)
            ping(topo.lan, topo.fw_lan_ip6)
            fw.run([sys.executable, "-c", SEND, "6003", topo.wan_ip4, topo.wan_ip6])
            fw.run([sys.executable, "-c", SEND, "6004", "127.0.0.1", "::1"])
            for d in (theirs_dir, ours_dir):
                for name in FILES:
                    wait_until(lambda d=d, n=name: len(parse(d / n)) >= PACKETS,
                               timeout=10, what=f"{PACKETS} records in {d / name}")
            assert ulogpy.stop() == 0
            ulogd.stop()
        yield ours_dir, theirs_dir, ulogpy.log_text(), ulogd.log_text()


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def parse(path: Path) -> list[list[tuple[str, object]]]:
    """Each record of a JSON, OPRINT or GPRINT file as its (key, value) pairs, in order."""
    if path.suffix == ".json":
        return [list(json.loads(line).items()) for line in read_lines(path)]
    if path.suffix == ".gprint":
        return [[tuple(kv.split("=", 1)) for kv in line.split(",")]
                for line in read_lines(path)]
    blocks = "\n".join(read_lines(path)).split("===>PACKET BOUNDARY")[1:]
    return [[tuple(line.split("=", 1)) for line in block.splitlines() if line]
            for block in blocks]


def compare(ours: list, theirs: list, tally: Tally, name: str) -> None:
    """Same keys in the same order (OPRINT: also the raw keys) with the same values;
    times the kernel did not stamp within the tolerance."""
    tally.same(f"{name}: number of records", len(ours), len(theirs))
    for i, (pa, pb) in enumerate(zip(ours, theirs, strict=False)):
        ra, rb = dict(pa), dict(pb)
        what = f"{name}[{i}] {rb.get('oob.prefix')!r} hook {rb.get('oob.hook')}"
        tally.same(f"{what} keys", [k for k, _ in pa], [k for k, _ in pb])
        # Locally generated packets carry no kernel time: each daemon's clock.
        stamped = int(rb["oob.hook"]) != 3
        for key in rb.keys() & ra.keys():
            if key == "timestamp" and not stamped:
                tally.close(f"{what} timestamp", _seconds(ra[key]), _seconds(rb[key]),
                            CLOCK_TOLERANCE_S)
            elif key == "oob.time.sec" and not stamped:
                tally.close(f"{what} oob.time",
                            int(ra[key]) + int(ra["oob.time.usec"]) / 1e6,
                            int(rb[key]) + int(rb["oob.time.usec"]) / 1e6, CLOCK_TOLERANCE_S)
            elif key == "oob.time.usec" and not stamped:
                continue
            elif key == "oob.seq.global":
                # One counter for the netns, bumped by ulogd's group, then by ulogpy's.
                tally.same(f"{what} {key} - 1", int(ra[key]) - 1, int(rb[key]))
            else:
                tally.same(f"{what} {key}", ra[key], rb[key])


@pytest.mark.ulogd
def test_records_equal_ulogds(run):
    ours, theirs, _ours_log, _theirs_log = run
    tally = Tally()
    for name in FILES:
        compare(parse(ours / name), parse(theirs / name), tally, name)
    print(f"NFLOG JSON, OPRINT, GPRINT: {tally}")
    assert not tally.differences, "\n".join(tally.differences)
    assert tally.compared > 650


@pytest.mark.ulogd
def test_records_cover_every_kind_of_packet(run):
    """The comparison above is only as good as the traffic: check what it covered."""
    ours, *_ = run
    records = [json.loads(line) for line in read_lines(ours / "plain.json")]
    kinds = {(r["oob.hook"], r["oob.family"], r["oob.prefix"]) for r in records}
    assert kinds == {(2, 2, "fwd "), (2, 10, "fwd "), (1, 2, ""), (1, 10, ""),
                     (3, 2, "out "), (3, 10, "out "), (1, 2, "lo "), (1, 10, "lo ")}
    assert {r["oob.mark"] for r in records if r["oob.hook"] == 2} == {5}
    assert all("raw.mac_len" in r for r in records if r["oob.hook"] == 1)
    assert all("oob.uid" in r for r in records if r["oob.hook"] == 3)
    assert not any("oob.seq.local" in r for r in records)  # asked for in seq.json only
    seq = [json.loads(line) for line in read_lines(ours / "seq.json")]
    assert [r["oob.seq.local"] for r in seq] == list(range(PACKETS))
    assert {r["raw.label"] for r in seq} == {7}


@pytest.mark.ulogd
def test_start_notices_as_ulogd_logs_them(run):
    _ours, _theirs, ours_log, theirs_log = run
    for text in ("NFLOG netlink queue threshold has been set to 2",
                 "NFLOG netlink queue timeout has been set to 5",
                 "NFLOG netlink buffer size has been set to 200000"):  # the kernel doubles
        assert text in theirs_log
        assert text in ours_log
    # attach_conntrack: kernels without CONFIG_NETFILTER_NETLINK_GLUE_CT refuse the flag.
    refused = "unable to set flags 0x4"
    assert (refused in ours_log) == (refused in theirs_log)


CONF_ONE = """\
[global]
loglevel=3
stack=log1:NFLOG,json1:JSON
[log1]
group={group}
{extra}
[json1]
file="{d}/out.json"
sync=1
"""


@pytest.mark.ulogd
def test_group_bound_by_another_process_is_refused_naming_it(tmp_path):
    with Netns("nflog") as ns:
        holder = UlogdProcess(ns, CONF_ONE.format(group=5, extra="", d=tmp_path / "u"),
                              tmp_path / "u")
        with holder:
            ours = UlogdProcess(ns, CONF_ONE.format(group=5, extra="", d=tmp_path / "p"),
                                tmp_path / "p", binary=ULOGPY)
            ours.start(wait=False)
            assert ours.proc.wait(timeout=15) == 1
            out = ours.output_text()
            assert "Traceback" not in out
            assert (f"NFLOG group 5 is already bound by another process: pid {holder.pid} "
                    "(ulogd)") in out, out
            assert holder.running()


CONF_TWICE = """\
[global]
stack=log1:NFLOG,json1:JSON
stack=log2:NFLOG,json2:JSON
[log1]
group=7
[log2]
group=7
[json1]
file="{d}/one.json"
[json2]
file="{d}/two.json"
"""


def test_same_group_twice_in_one_configuration_is_refused(tmp_path):
    with Netns("nflog") as ns:
        ours = UlogdProcess(ns, CONF_TWICE.format(d=tmp_path), tmp_path, binary=ULOGPY)
        ours.start(wait=False)
        assert ours.proc.wait(timeout=15) == 1
        out = ours.output_text()
        assert "Traceback" not in out
        assert "log2:NFLOG: NFLOG group 7 is already bound by another NFLOG instance of " \
            "this configuration" in out, out


FLOOD = """
import socket, sys
n = int(sys.argv[1])
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    for _ in range(n):
        s.sendto(b"f" * 100, ("127.0.0.1", 6006))
"""


def test_packets_dropped_by_the_kernel_are_counted_exactly(tmp_path):
    """A stopped daemon with a tiny buffer: every packet is either written or counted lost."""
    sent, tail = 400, 3
    extra = ("netlink_socket_buffer_size=4096\nnetlink_socket_buffer_maxsize=16384\n"
             "netlink_qtimeout=1")
    with Netns("nflog") as ns:
        ns.nft('table inet t {\n chain o {\n  type filter hook output priority 0;\n'
               '  udp dport 6006 log group 6\n }\n}\n')
        daemon = UlogdProcess(ns, CONF_ONE.format(group=6, extra=extra, d=tmp_path),
                              tmp_path / "run", binary=ULOGPY)
        with daemon:
            daemon.send_signal(signal.SIGSTOP)
            try:
                ns.run([sys.executable, "-c", FLOOD, str(sent)])
            finally:
                daemon.send_signal(signal.SIGCONT)
            # The gap shows when the next numbered packet arrives.
            wait_until(lambda: "increasing buffer size" in daemon.log_text(), timeout=5,
                       what="the overrun noticed")
            ns.run([sys.executable, "-c", FLOOD, str(tail)])

            def accounted() -> dict | None:
                daemon.send_signal(signal.SIGUSR1)
                reports = re.findall(r"counters log1:NFLOG: (.*)", daemon.log_text())
                if not reports:
                    return None
                counters = dict(kv.split("=") for kv in reports[-1].split())
                written = len(read_lines(tmp_path / "out.json"))
                done = written + int(counters.get("lost", 0)) == sent + tail
                return counters if done else None

            counters = wait_until(accounted, timeout=10, interval=0.3,
                                  what="written + lost == sent")
        assert int(counters["lost"]) > 0
        assert int(counters["overruns"]) >= 1
        assert "we are losing events, increasing buffer size to 16384" in daemon.log_text()
        lines = read_lines(tmp_path / "out.json")
        assert all(json.loads(line)["oob.prefix"] == "" for line in lines)
