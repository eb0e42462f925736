#!/usr/bin/env python3
"""Record real ctnetlink messages from the kernel into tests/fixtures/conntrack/.

Run as root, from the repository root:

    PYTHONPATH=. python scripts/record_ct_fixtures.py [--out tests/fixtures/conntrack]

Everything happens inside three network namespaces created for the run and
deleted at the end (client C -- router R -- server S, veth pairs created
directly inside them, 10.91.x / fd00:91:x:: addresses).  The main namespace's
links, firewall and sysctls are never touched.  In R: forwarding, conntrack
accounting and timestamps are switched on (per-netns sysctls), nft rules add
a ct mark, a ct zone, SNAT, masquerade and DNAT, and a netlink socket
subscribed to NEW|UPDATE|DESTROY records every datagram the kernel sends.

Phases (each datagram is tagged with the phase during which it arrived):
  traffic  flows of `FLOWS` (TCP, UDP, UDPLITE, ICMP, GRE, proto 253; IPv4/IPv6)
  dump     an IPCTNL_MSG_CT_GET dump; `conntrack -L -o extended,id` right after
  ctrzero  an IPCTNL_MSG_CT_GET_CTRZERO dump; `conntrack -L` again (counters 0)
  late     one more flow, plus one more request/reply on the udp4 flow
  flush    `conntrack -F` in R, which produces the DESTROY events

Output: messages.jsonl (one line per received datagram, hex as it came from
the kernel), manifest.json (topology, flows with the addresses/ports/ids used,
phase times, dump sequence numbers, kernel release) and the two
`conntrack -L` texts.  Tests compare decoded values with those.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import platform
import random
import select
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ulogpy.netlink import conntrack, nlsock

CLONE_NEWNET = 0x40000000
IPPROTO_UDPLITE = 136
IPPROTO_GRE = 47
IPPROTO_TEST = 253  # RFC 3692 experimentation: tracked by the generic tracker

C4, R4C, R4S, S4 = "10.91.1.2", "10.91.1.1", "10.91.2.1", "10.91.2.2"
C6, R6C, R6S, S6 = "fd00:91:1::2", "fd00:91:1::1", "fd00:91:2::1", "fd00:91:2::2"

NFT_RULES = f"""
table inet rec {{
    chain pre_raw {{
        type filter hook prerouting priority raw; policy accept;
        udp dport 5041 ct zone set 7
        udp sport 5041 ct zone set 7
    }}
    chain fwd_chain {{
        type filter hook forward priority filter; policy accept;
        ct state new tcp dport 5001 ct mark set 0x2a
        ct state new counter
    }}
}}
table ip recnat {{
    chain pre {{
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr {R4C} tcp dport 8080 dnat to {S4}:5021
    }}
    chain post {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "r1" ip daddr {S4} tcp dport 5011 snat to {R4S}:30011
        oifname "r1" ip daddr {S4} udp dport 5012 masquerade
        oifname "r1" ip daddr {S4} icmp type echo-request icmp id 17185 masquerade
    }}
}}
table ip6 recnat6 {{
    chain post {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "r1" ip6 daddr {S6} udp dport 5031 snat to {R6S}
    }}
}}
"""

# What each flow sends; reply_* = the reply tuple the kernel should build.
# fmt: off
FLOWS: list[dict] = [
    dict(name="tcp4", family=4, proto=6, src=C4, sport=40001, dst=S4, dport=5001,
         reply_src=S4, reply_sport=5001, reply_dst=C4, reply_dport=40001,
         mark=0x2A, send=1000, recv=2000),
    dict(name="udp4", family=4, proto=17, src=C4, sport=40002, dst=S4, dport=5002,
         reply_src=S4, reply_sport=5002, reply_dst=C4, reply_dport=40002,
         requests=[100, 100, 100], replies=[50, 50]),
    dict(name="icmp4", family=4, proto=1, src=C4, dst=S4, icmp_id=0x1234,
         reply_src=S4, reply_dst=C4, pings=3, payload=56),
    dict(name="tcp6", family=6, proto=6, src=C6, sport=40004, dst=S6, dport=5004,
         reply_src=S6, reply_sport=5004, reply_dst=C6, reply_dport=40004,
         send=3000, recv=500),
    dict(name="udp6", family=6, proto=17, src=C6, sport=40005, dst=S6, dport=5005,
         reply_src=S6, reply_sport=5005, reply_dst=C6, reply_dport=40005,
         requests=[200, 300], replies=[10]),
    dict(name="icmp6", family=6, proto=58, src=C6, dst=S6, icmp_id=0x2345,
         reply_src=S6, reply_dst=C6, pings=2, payload=56),
    dict(name="tcp4_snat", family=4, proto=6, src=C4, sport=40011, dst=S4, dport=5011,
         reply_src=S4, reply_sport=5011, reply_dst=R4S, reply_dport=30011,
         send=100, recv=100),
    dict(name="udp4_masq", family=4, proto=17, src=C4, sport=40012, dst=S4, dport=5012,
         reply_src=S4, reply_sport=5012, reply_dst=R4S, reply_dport=40012,
         requests=[64], replies=[64]),
    dict(name="icmp4_masq", family=4, proto=1, src=C4, dst=S4, icmp_id=0x4321,
         reply_src=S4, reply_dst=R4S, pings=1, payload=56),
    dict(name="tcp4_dnat", family=4, proto=6, src=C4, sport=40021, dst=R4C, dport=8080,
         reply_src=S4, reply_sport=5021, reply_dst=C4, reply_dport=40021,
         server_port=5021, send=10, recv=20),
    dict(name="udp6_snat", family=6, proto=17, src=C6, sport=40031, dst=S6, dport=5031,
         reply_src=S6, reply_sport=5031, reply_dst=R6S, reply_dport=40031,
         requests=[33], replies=[44]),
    dict(name="udp4_zone", family=4, proto=17, src=C4, sport=40041, dst=S4, dport=5041,
         reply_src=S4, reply_sport=5041, reply_dst=C4, reply_dport=40041,
         zone=7, requests=[20], replies=[30]),
    dict(name="udplite4", family=4, proto=136, src=C4, sport=40051, dst=S4, dport=5051,
         reply_src=S4, reply_sport=5051, reply_dst=C4, reply_dport=40051,
         requests=[40], replies=[40]),
    dict(name="gre4", family=4, proto=47, src=C4, dst=S4, reply_src=S4, reply_dst=C4,
         requests=[24], replies=[24]),
    dict(name="raw253_4", family=4, proto=253, src=C4, dst=S4, reply_src=S4, reply_dst=C4,
         requests=[10, 10], replies=[12]),
]
LATE_FLOW = dict(name="udp4_late", family=4, proto=17, src=C4, sport=40061, dst=S4, dport=5061,
                 reply_src=S4, reply_sport=5061, reply_dst=C4, reply_dport=40061,
                 requests=[100, 100, 100], replies=[50, 50])
# fmt: on
UDP4_EXTRA = dict(requests=[77], replies=[88])  # sent on the udp4 flow after CTRZERO

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def inside(ns: str) -> Iterator[None]:
    """Run the block with this thread in netns `ns` (sockets made there stay there)."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def run(*args: str, stdin: str | None = None) -> str:
    res = subprocess.run(args, input=stdin, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {res.stderr.strip()}")
    return res.stdout


def nsrun(ns: str, *args: str, stdin: str | None = None) -> str:
    return run("ip", "netns", "exec", ns, *args, stdin=stdin)


def setup(c: str, r: str, s: str) -> None:
    for ns in (c, r, s):
        run("ip", "netns", "add", ns)
        run("ip", "-n", ns, "link", "set", "lo", "up")
    run("ip", "-n", c, "link", "add", "c0", "type", "veth", "peer", "name", "r0", "netns", r)
    run("ip", "-n", r, "link", "add", "r1", "type", "veth", "peer", "name", "s0", "netns", s)
    for ns, dev, a4, a6 in (
        (c, "c0", C4, C6),
        (r, "r0", R4C, R6C),
        (r, "r1", R4S, R6S),
        (s, "s0", S4, S6),
    ):
        run("ip", "-n", ns, "addr", "add", f"{a4}/24", "dev", dev)
        run("ip", "-n", ns, "-6", "addr", "add", f"{a6}/64", "dev", dev, "nodad")
        run("ip", "-n", ns, "link", "set", dev, "up")
    run("ip", "-n", c, "route", "add", "default", "via", R4C)
    run("ip", "-n", c, "-6", "route", "add", "default", "via", R6C)
    run("ip", "-n", s, "route", "add", "default", "via", R4S)
    run("ip", "-n", s, "-6", "route", "add", "default", "via", R6S)
    nsrun(
        r,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
        "net.ipv6.conf.all.forwarding=1",
        "net.netfilter.nf_conntrack_acct=1",
        "net.netfilter.nf_conntrack_timestamp=1",
        # UDPLITE over veth fails conntrack's checksum check and would go untracked.
        "net.netfilter.nf_conntrack_checksum=0",
    )
    nsrun(c, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
    nsrun(r, "nft", "-f", "-", stdin=NFT_RULES)


class Listener(threading.Thread):
    """Collects every datagram of the conntrack event socket, tagged with the phase."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.phase = "setup"
        self.records: list[dict] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.1)
            if ready:
                data = self.sock.recv(65536)
                self.records.append(
                    dict(phase=self.phase, kind="event", recv_ns=time.time_ns(), hex=data.hex())
                )


def raw_dump(r: str, request: bytes, phase: str) -> list[dict]:
    """Send one dump request in R and keep every reply datagram, NLMSG_DONE included."""
    with inside(r):
        sock = nlsock.open_socket(0)
    out = []
    try:
        sock.send(request)
        done = False
        while not done:
            data = sock.recv(nlsock.DUMP_BUFSIZE)
            out.append(dict(phase=phase, kind="dump", recv_ns=time.time_ns(), hex=data.hex()))
            for _off, _len, mtype, *_ in nlsock.iter_messages(data):
                if mtype in (nlsock.NLMSG_DONE, nlsock.NLMSG_ERROR):
                    done = True
    finally:
        sock.close()
    return out


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise RuntimeError("connection closed early")
        buf += chunk
    return buf


def _af(flow: dict) -> int:
    return socket.AF_INET if flow["family"] == 4 else socket.AF_INET6


def tcp_flow(c: str, s: str, f: dict) -> None:
    af = _af(f)
    with inside(s):
        lsock = socket.socket(af, socket.SOCK_STREAM)
        lsock.bind((f["reply_src"], f.get("server_port", f["dport"])))
        lsock.listen(1)
    with inside(c):
        cli = socket.socket(af, socket.SOCK_STREAM)
        cli.bind((f["src"], f["sport"]))
    cli.settimeout(5)
    lsock.settimeout(5)
    cli.connect((f["dst"], f["dport"]))
    srv, _ = lsock.accept()
    srv.settimeout(5)
    cli.sendall(b"q" * f["send"])
    _recv_exact(srv, f["send"])
    srv.sendall(b"r" * f["recv"])
    _recv_exact(cli, f["recv"])
    cli.close()  # client closes first: client side goes to TIME_WAIT
    time.sleep(0.05)
    srv.close()
    lsock.close()
    time.sleep(0.05)


def dgram_sockets(c: str, s: str, f: dict, proto: int = 0) -> tuple[socket.socket, socket.socket]:
    af = _af(f)
    with inside(s):
        srv = socket.socket(af, socket.SOCK_DGRAM, proto)
        srv.bind((f["reply_src"], f["dport"]))
    with inside(c):
        cli = socket.socket(af, socket.SOCK_DGRAM, proto)
        cli.bind((f["src"], f["sport"]))
    cli.settimeout(5)
    srv.settimeout(5)
    return cli, srv


def dgram_exchange(cli: socket.socket, srv: socket.socket, f: dict, spec: dict) -> None:
    peer = None
    for size in spec["requests"]:
        cli.sendto(b"u" * size, (f["dst"], f["dport"]))
        _, peer = srv.recvfrom(65536)
    for size in spec["replies"]:
        srv.sendto(b"v" * size, peer)
        cli.recvfrom(65536)


def icmp_flow(c: str, f: dict) -> None:
    af = _af(f)
    proto = socket.IPPROTO_ICMP if af == socket.AF_INET else socket.IPPROTO_ICMPV6
    with inside(c):
        sock = socket.socket(af, socket.SOCK_DGRAM, proto)
        sock.bind((f["src"], f["icmp_id"]))  # ping socket: the port is the echo id
    sock.settimeout(5)
    etype = 8 if af == socket.AF_INET else 128
    for seq in range(1, f["pings"] + 1):
        sock.sendto(struct.pack("!BBHHH", etype, 0, 0, 0, seq) + b"p" * f["payload"], (f["dst"], 0))
        sock.recvfrom(65536)
    sock.close()


def raw_ip_flow(c: str, s: str, f: dict) -> None:
    """Raw IP datagrams of protocol f['proto'] both ways (GRE gets a version-0 header)."""
    with inside(s):
        srv = socket.socket(socket.AF_INET, socket.SOCK_RAW, f["proto"])
    with inside(c):
        cli = socket.socket(socket.AF_INET, socket.SOCK_RAW, f["proto"])
        cli.bind((f["src"], 0))
    srv.settimeout(5)
    cli.settimeout(5)
    head = struct.pack("!HH", 0, 0x0800) if f["proto"] == IPPROTO_GRE else b""
    for size in f["requests"]:
        cli.sendto(head + b"g" * (size - len(head)), (f["dst"], 0))
        srv.recvfrom(65536)
    for size in f["replies"]:
        srv.sendto(head + b"h" * (size - len(head)), (f["src"], 0))
        cli.recvfrom(65536)
    cli.close()
    srv.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="tests/fixtures/conntrack", type=Path)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("must run as root")
    tag = f"ulogpy-rec-{random.randint(1000, 99999)}"
    c, r, s = f"{tag}-c", f"{tag}-r", f"{tag}-s"
    phases: dict[str, int] = {}
    try:
        setup(c, r, s)
        with inside(r):
            ev = nlsock.open_socket(
                conntrack.NF_NETLINK_CONNTRACK_NEW
                | conntrack.NF_NETLINK_CONNTRACK_UPDATE
                | conntrack.NF_NETLINK_CONNTRACK_DESTROY
            )
        rcvbuf = nlsock.set_rcvbuf(ev, 8 << 20)
        listener = Listener(ev)
        listener.start()
        time.sleep(0.2)

        listener.phase = "traffic"
        phases["traffic"] = time.time_ns()
        udp_keep: dict[str, tuple[socket.socket, socket.socket]] = {}
        for f in FLOWS:
            if f["proto"] == 6:
                tcp_flow(c, s, f)
            elif f["proto"] in (17, IPPROTO_UDPLITE):
                pair = dgram_sockets(c, s, f, f["proto"] if f["proto"] != 17 else 0)
                dgram_exchange(*pair, f, f)
                udp_keep[f["name"]] = pair
            elif f["proto"] in (1, 58):
                icmp_flow(c, f)
            else:
                raw_ip_flow(c, s, f)
        time.sleep(0.5)

        records: list[dict] = []
        seq_dump = nlsock.next_seq()
        listener.phase = "dump"
        phases["dump"] = time.time_ns()
        records += raw_dump(r, conntrack.build_dump_request(seq_dump), "dump")
        listing_before = nsrun(r, "conntrack", "-L", "-o", "extended,id")

        seq_zero = nlsock.next_seq()
        listener.phase = "ctrzero"
        phases["ctrzero"] = time.time_ns()
        records += raw_dump(r, conntrack.build_ctrzero_request(seq_zero), "ctrzero")
        listing_zeroed = nsrun(r, "conntrack", "-L", "-o", "extended,id")
        time.sleep(0.3)

        listener.phase = "late"
        phases["late"] = time.time_ns()
        udp4 = next(f for f in FLOWS if f["name"] == "udp4")
        dgram_exchange(*udp_keep["udp4"], udp4, UDP4_EXTRA)
        late = dgram_sockets(c, s, LATE_FLOW)
        dgram_exchange(*late, LATE_FLOW, LATE_FLOW)
        time.sleep(0.5)

        listener.phase = "flush"
        phases["flush"] = time.time_ns()
        nsrun(r, "conntrack", "-F")
        time.sleep(1.5)
        phases["end"] = time.time_ns()
        listener.stopping.set()
        listener.join()
        ev.close()
        for pair in [*udp_keep.values(), late]:
            for sock in pair:
                sock.close()
    finally:
        for ns in (c, r, s):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)

    all_records = sorted(listener.records + records, key=lambda rec: rec["recv_ns"])
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "messages.jsonl", "w") as fh:
        for i, rec in enumerate(all_records):
            fh.write(json.dumps(dict(n=i, **rec)) + "\n")
    (args.out / "conntrack_L_dump.txt").write_text(listing_before)
    (args.out / "conntrack_L_ctrzero.txt").write_text(listing_zeroed)
    manifest = dict(
        recorded_by="scripts/record_ct_fixtures.py",
        kernel=platform.release(),
        event_socket_rcvbuf=rcvbuf,
        addresses=dict(C4=C4, R4C=R4C, R4S=R4S, S4=S4, C6=C6, R6C=R6C, R6S=R6S, S6=S6),
        flows=FLOWS,
        late_flow=LATE_FLOW,
        udp4_extra=UDP4_EXTRA,
        dump_seq=seq_dump,
        ctrzero_seq=seq_zero,
        phases_ns=phases,
        nft_rules=NFT_RULES,
    )
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"{len(all_records)} datagrams written to {args.out}")


if __name__ == "__main__":
    main()
