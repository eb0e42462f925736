"""IPFIX, live: ulogd 2.0.8 and ulogpy side by side on the same conntrack DESTROY events,
into real collectors.

Both daemons run in the firewall namespace of a lan/fw/wan topology with masquerading
(accounting and timestamps on; loopback untracked, so the exports themselves make no
flows).  TCP, UDP and ICMP flows cross the NAT, with entries inserted by `conntrack -I`;
IPv6 entries inserted last fill ulogd's messages until all IPv4 records have gone out
(ulogd sends only full messages: its flush timer fires once, spec O14).

* TCP, compatible mode: the messages on the wire are ulogd's byte for byte (template set,
  every data record), apart from the export time, the sequence numbers (ulogpy's are
  RFC 7011's: records sent before the message) and where the messages split.
* UDP into nfcapd: `nfdump -r` shows the same IPv4 flows for ulogpy's export as for
  ulogd's; with extended=1 also the IPv6 flows, 64-bit counters, millisecond times and
  the NAT address and port from the reply tuple (nfdump 1.7.1 shows the IPv4 one only;
  tests/unit/test_ipfix.py checks the IPv6 field).
* A TCP collector that goes away: the records wait in the queue (the oldest beyond
  queue_size dropped, counted) and reach the collector once it is back, on a new
  session that starts with the template and sequence number 0.
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from tests.netns import (
    NatTopology,
    Netns,
    conntrack_flush,
    free_port,
    tcp_collector,
    wait_until,
)
from tests.outputs import Delivered
from tests.ulogd_ref import ULOGPY, UlogdProcess
from ulogpy.config.model import options_model
from ulogpy.core.registry import registry

pytestmark = [pytest.mark.live, pytest.mark.ulogd]

NFCAPD, NFDUMP = shutil.which("nfcapd"), shutil.which("nfdump")
COMPAT_RECORD = 33  # ulogd's template 256: bytes per data record
#: IPv4 entries inserted besides the 3 real IPv4 flows.
INSERTED = 21


# -- reading IPFIX ---------------------------------------------------------------------

def split_stream(data: bytes) -> list[bytes]:
    """The messages of a TCP stream (each message says its length)."""
    out, i = [], 0
    while i + 16 <= len(data):
        version, length = struct.unpack_from("!HH", data, i)
        assert version == 10 and length >= 16, data[i:i + 16].hex()
        out.append(data[i:i + length])
        i += length
    assert i == len(data), "stream ends inside a message"
    return out


def parse(message: bytes) -> dict:
    """Header fields, the template sets' bytes, and the data records of each set id."""
    version, length, export, seq, domain = struct.unpack_from("!HHIII", message)
    assert length == len(message)
    templates, records, i = [], [], 16
    while i < length:
        set_id, set_len = struct.unpack_from("!HH", message, i)
        body = message[i + 4:i + set_len]
        if set_id == 2:
            templates.append(message[i:i + set_len])
        else:
            size = COMPAT_RECORD
            assert len(body) % size == 0
            records += [body[j:j + size] for j in range(0, len(body), size)]
        i += set_len
    return {"export": export, "seq": seq, "domain": domain, "templates": templates,
            "records": records, "count": len(records)}


class Nfcapd:
    """nfcapd in `ns` on a loopback UDP port, writing into a directory of its own."""

    def __init__(self, ns: Netns, port: int, dir: Path) -> None:
        self.dir = dir
        dir.mkdir()
        self.proc = ns.popen([NFCAPD, "-b", "127.0.0.1", "-p", str(port), "-w", str(dir),
                              "-t", "3600"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.STDOUT)

    def stop(self) -> list[str]:
        """Stop it (it writes its file then) and return `nfdump -r` lines of every flow."""
        self.proc.terminate()
        self.proc.wait(10)
        files = sorted(p for p in self.dir.rglob("nfcapd.*") if "current" not in p.name)
        assert files, list(self.dir.rglob("*"))
        lines = []
        for f in files:
            out = subprocess.run(
                [NFDUMP, "-r", str(f), "-q", "-N", "-o",
                 "fmt:%pr|%sa|%sp|%da|%dp|%pkt|%byt|%xsa|%xsp|%nevt|%tfs"],
                capture_output=True, text=True, check=True).stdout
            lines += ["|".join(p.strip() for p in ln.split("|")) for ln in out.splitlines()
                      if ln.strip()]
        return lines


CONF = """\
[global]
loglevel=3
stack=ct1:NFCT,tcp1:IPFIX
stack=ct1:NFCT,udp1:IPFIX
{more}
[ct1]
hash_enable=0
event_mask=0x00000004
accept_src_filter={lan_net4}
[ct2]
hash_enable=0
event_mask=0x00000004
[tcp1]
oid=7
host="127.0.0.1"
port={tcp}
[udp1]
oid=7
host="127.0.0.1"
port={udp}
proto="udp"
[ext1]
oid=9
host="127.0.0.1"
port={ext}
proto="udp"
extended=1
"""


@pytest.mark.skipif(NFCAPD is None or NFDUMP is None, reason="nfdump (nfcapd) not installed")
def test_same_messages_as_ulogd_and_the_same_flows_in_nfcapd(tmp_path: Path) -> None:
    sysctls = {"net.netfilter.nf_conntrack_acct": 1, "net.netfilter.nf_conntrack_timestamp": 1}
    with NatTopology(fw_sysctls=sysctls) as topo:
        fw = topo.fw
        fw.nft("table inet ulogpy_notrack {\n"
               "  chain pre { type filter hook prerouting priority raw; iif lo notrack; }\n"
               "  chain out { type filter hook output priority raw; oif lo notrack; }\n}\n")
        ports = {name: free_port(socket.SOCK_DGRAM if "udp" in name or "ext" in name
                                 else socket.SOCK_STREAM)
                 for name in ("ulogd_tcp", "ulogpy_tcp", "ulogd_udp", "ulogpy_udp", "ext")}
        listeners = {who: tcp_collector(fw, ports[f"{who}_tcp"], tmp_path / f"{who}.bin", 12)
                     for who in ("ulogd", "ulogpy")}
        caps = {name: Nfcapd(fw, ports[name], tmp_path / name)
                for name in ("ulogd_udp", "ulogpy_udp", "ext")}
        time.sleep(0.5)  # nfcapd binds
        common = {"lan_net4": topo.lan_net4, "ext": ports["ext"]}
        ulogd_conf = CONF.format(more="", tcp=ports["ulogd_tcp"], udp=ports["ulogd_udp"],
                                 **common)
        ulogpy_conf = CONF.format(more="stack=ct2:NFCT,ext1:IPFIX", tcp=ports["ulogpy_tcp"],
                                  udp=ports["ulogpy_udp"], **common)
        (tmp_path / "d1").mkdir()
        (tmp_path / "d2").mkdir()
        with UlogdProcess(fw, ulogd_conf, tmp_path / "d1"), \
                UlogdProcess(fw, ulogpy_conf, tmp_path / "d2", binary=ULOGPY):
            time.sleep(1.5)  # past ulogd's one flush timer
            flows = topo.generate_flows(families=(4, 6))
            lan = topo.lan_ip4.rsplit(".", 1)[0]
            fw.run(["sh", "-c",
                    f"for p in $(seq 2000 {2000 + INSERTED - 1}); do conntrack -I -p udp "
                    f"-s {lan}.77 -d {topo.wan_ip4} --sport $p --dport 53 -t 60 "
                    ">/dev/null || exit 1; done"])
            time.sleep(0.5)
            conntrack_flush(fw)
            # IPv6 filler: ulogd sends only full messages, and lets IPv6 through
            six = topo.lan_ip6.rsplit(":", 3)[0]
            fw.run(["sh", "-c",
                    f"for p in $(seq 3000 3040); do conntrack -I -p udp "
                    f"-s {six}:9::1 -d {six}:9::2 --sport $p --dport 53 -t 60 "
                    ">/dev/null || exit 1; done"])
            conntrack_flush(fw)
            wait_until(lambda: all(p.poll() is not None for p in listeners.values()), 15,
                       what="both tcp collectors done")
        nfdump = {name: cap.stop() for name, cap in caps.items()}

    # -- TCP: ulogd's bytes ------------------------------------------------------------
    theirs = [parse(m) for m in split_stream((tmp_path / "ulogd.bin").read_bytes())]
    ours = [parse(m) for m in split_stream((tmp_path / "ulogpy.bin").read_bytes())]
    counts = [m["count"] for m in theirs]
    assert len(counts) >= 3 and counts[0] == 13 and set(counts[1:]) == {14}
    assert sum(m["count"] for m in ours) == 24
    assert theirs[0]["templates"] and ours[0]["templates"]
    assert ours[0]["templates"] == theirs[0]["templates"]
    assert not any(m["templates"] for m in theirs[1:] + ours[1:])  # send_template=once
    now = time.time()
    for m in theirs + ours:
        assert m["domain"] == 7 and now - 60 < m["export"] <= now + 1
    # ulogd's sequence numbers count the message's own records, ours RFC 7011's do not
    assert [m["seq"] for m in theirs] == [sum(counts[:i + 1]) for i in range(len(counts))]
    seq = 0
    for m in ours:
        assert m["seq"] == seq
        seq += m["count"]
    sent = [r for m in theirs for r in m["records"]]
    # ulogd's accept_src_filter lets IPv6 flows through, and it writes the first 4 bytes
    # of their addresses as IPv4 ones; ulogpy sends none (see extended=1)
    v6_head = socket.inet_pton(socket.AF_INET6, topo.lan_ip6)[:4]
    assert any(r[:4] == v6_head for r in sent)
    sent = [r for r in sent if r[:4] != v6_head]
    assert sorted(r for m in ours for r in m["records"]) == sorted(sent)
    v4 = [f for f in flows if f.family == 4]
    for flow in v4:  # the real flows are among them, with counters and times
        proto = {"tcp": 6, "udp": 17, "icmp": 1}[flow.proto]
        hit = [r for r in sent if r[0:4] == socket.inet_aton(flow.src) and
               r[4:8] == socket.inet_aton(flow.dst) and r[28] == proto and
               struct.unpack_from("!HH", r, 24) == (flow.sport or 0, flow.dport or 0)]
        assert len(hit) == 1, flow
        packets, octets, start, end = struct.unpack_from("!IIII", hit[0], 8)
        assert packets >= 2 and octets > 0 and 0 < start <= end

    # -- UDP into nfcapd: the same flows ---------------------------------------------
    v6_text = socket.inet_ntoa(v6_head)
    assert len(nfdump["ulogd_udp"]) == sum(counts)
    assert sorted(nfdump["ulogpy_udp"]) == sorted(r for r in nfdump["ulogd_udp"]
                                                  if r.split("|")[1] != v6_text)
    # -- extended: IPv6 flows and the NAT address and port ------------------------------
    ext = [r.split("|") for r in nfdump["ext"]]
    millis = []
    for flow in flows:
        proto = {"tcp": "6", "udp": "17", "icmp": "1" if flow.family == 4 else "58"}
        rows = [r for r in ext if r[0] == proto[flow.proto] and r[1] == flow.src and
                r[3] == flow.dst and (flow.sport is None or r[2] == str(flow.sport))]
        assert len(rows) == 1, (flow, ext)
        row = rows[0]
        assert int(row[5]) >= 2 and int(row[6]) > 0, row  # packets, bytes: both ways
        if flow.family == 4:  # nfdump 1.7.1 does not decode postNATSourceIPv6Address
            assert row[7] == topo.fw_wan_ip4, row  # the masqueraded source
            assert row[9] == "DELETE", row  # natEvent NAT44 session delete
        millis.append(row[10].rsplit(".", 1)[1])
        if flow.sport is not None:
            assert row[4] == str(flow.dport) and row[8].isdigit() and int(row[8]) > 0, row
    assert any(m != "000" for m in millis), millis  # flowStartMilliseconds
    lan4 = topo.lan_ip4.rsplit(".", 1)[0] + ".77"
    inserted = [r for r in ext if r[1] == lan4]
    assert len(inserted) == INSERTED
    assert all(r[7] == lan4 and r[8] == r[2] for r in inserted)  # not translated


# -- a collector that goes away ----------------------------------------------------------

class Collector:
    """A TCP collector on loopback that keeps each connection's bytes."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sessions: list[bytearray] = []
        self.listener: socket.socket | None = None
        self.conns: list[socket.socket] = []

    def start(self) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(4)
        self.listener.setblocking(False)

    def pump(self) -> None:
        assert self.listener is not None
        try:
            while True:
                conn, _ = self.listener.accept()
                conn.setblocking(False)
                self.conns.append(conn)
                self.sessions.append(bytearray())
        except BlockingIOError:
            pass
        for conn, buf in zip(self.conns, self.sessions, strict=True):
            if conn.fileno() < 0:
                continue
            try:
                while chunk := conn.recv(65536):
                    buf += chunk
            except BlockingIOError:
                pass

    def records(self) -> list[int]:
        """The source port of every record received, over all sessions, in order."""
        out = []
        for buf in self.sessions:
            for m in split_stream(bytes(buf[:_whole(buf)])):
                out += [struct.unpack_from("!H", r, 24)[0] for r in parse(m)["records"]]
        return out

    def stop(self) -> None:
        for c in self.conns:
            c.close()
        if self.listener is not None:
            self.listener.close()
            self.listener = None


def _whole(buf: bytearray) -> int:
    i = 0
    while i + 4 <= len(buf):
        length = struct.unpack_from("!H", buf, i + 2)[0]
        if i + length > len(buf):
            break
        i += length
    return i


def _record(sport: int) -> dict:
    return {"orig.ip.saddr": bytes([10, 1, 0, 1]), "orig.ip.daddr": bytes([10, 1, 0, 2]),
            "orig.raw.pktcount": 1, "orig.raw.pktlen": 60, "reply.raw.pktcount": 1,
            "reply.raw.pktlen": 60, "flow.start.sec": 1, "flow.start.usec": 0,
            "flow.end.sec": 2, "flow.end.usec": 0, "orig.l4.sport": sport,
            "orig.l4.dport": 53, "orig.ip.protocol": 17, "ct.mark": 0, "oob.family": 2}


def ipfix(**opts):
    cls = registry()["IPFIX"]
    out = cls("i1", options_model(cls)(**opts))
    out.configure()
    return out


def test_collector_outage_keeps_what_the_queue_holds() -> None:
    collector = Collector(free_port())
    collector.start()
    out = Delivered(ipfix(oid=3, host="127.0.0.1", port=collector.port, queue_size=5))
    out.start()
    try:
        for sport in range(1000, 1004):
            out.write(_record(sport))
        out.flush()
        wait_until(lambda: (collector.pump(), len(collector.records()) == 4)[1], 10,
                   what="the first records")
        collector.stop()
        time.sleep(0.3)  # the collector's FIN arrives
        dropped_before = out.counters.get("dropped")
        for sport in range(2000, 2008):
            out.write(_record(sport))
        out.flush()
        wait_until(lambda: out.counters.get("write_errors") > 0, 5, what="the outage noticed")
        collector.start()
        wait_until(lambda: (collector.pump(), collector.records()[-5:] ==
                            list(range(2003, 2008)))[1], 20, what="the queue after the outage")
    finally:
        out.stop()
        collector.stop()
    assert out.counters.get("dropped") - dropped_before == 3
    sessions = [[parse(m) for m in split_stream(bytes(s[:_whole(s)]))]
                for s in collector.sessions if s]
    assert len(sessions) >= 2
    last = sessions[-1]  # a new session: the template first, numbering from 0
    assert last[0]["templates"] and last[0]["seq"] == 0
    assert collector.records()[:4] == [1000, 1001, 1002, 1003]


BAD_CONF = """\
[global]
stack=ct1:NFCT,ipfix1:IPFIX
[ct1]
hash_enable=0
[ipfix1]
{opts}
"""


@pytest.mark.parametrize("opts, words", [
    ('host="127.0.0.1"', "invalid Observation ID"),
    ("oid=1", "no destination host specified"),
    ('oid=1\nhost="127.0.0.1"\nproto="sctp"', "unsupported protocol 'sctp' (valid: tcp or udp)"),
    ('oid=1\nhost="127.0.0.1"\nmtu=50', "option 'mtu': 50 is out of range (101-65507"),
    ('oid=1\nhost="127.0.0.1"\nextended=1\nmtu=200', "option 'mtu': 200 is out of range"),
    ('oid=1\nhost="127.0.0.1"\nport=0', "not a port number"),
])
def test_bad_options_are_refused_by_name(tmp_path: Path, opts: str, words: str) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text(BAD_CONF.format(opts=opts))
    proc = subprocess.run([ULOGPY, "--check", "-c", str(conf)], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 1
    assert words in proc.stderr + proc.stdout
    assert "ipfix1" in proc.stderr + proc.stdout or "IPFIX" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
