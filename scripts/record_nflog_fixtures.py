#!/usr/bin/env python3
"""Record real nfnetlink_log messages from the kernel into tests/fixtures/nflog/.

Run as root, from the repository root:

    PYTHONPATH=. python scripts/record_nflog_fixtures.py [--out tests/fixtures/nflog]

Everything happens inside three network namespaces created for the run and
deleted at the end: client C -- router R -- server S (veth pairs created
inside them, 10.92.x / fd00:92:x:: addresses; in S the veth is a port of a
bridge).  The main namespace's links, firewall and sysctls are never touched.

nft rules in R log to group 10 (configured as ulogpy's NFLOG configures a
group: copy whole packets, per-group sequence numbers), group 11 (global
sequence numbers and conntrack attached, batches of 3 with a 0.1 s flush
timeout, so datagrams carry several messages and NLMSG_DONE) and group 13
(a tiny socket buffer that is not read while packets arrive, so the kernel
drops some: ENOBUFS and sequence gaps); a bridge-family rule in S logs to
group 12.  The config requests themselves go through ulogpy's builders.

Packets (`PACKETS` below): forwarded UDP over IPv4/IPv6 with a mark,
incoming ICMP echo requests logged without prefix, locally generated UDP
from an unprivileged uid, loopback input, a snaplen-truncated packet, the
conntrack batch and the bridged packet.

Output: messages.jsonl (one line per datagram as the kernel sent it, or per
ENOBUFS seen by recv: `group`, `kind` = data | enobufs, `recv_ns`, `hex`)
and manifest.json (interfaces with ifindex and MAC, addresses, what each
packet was and which rule logged it, the kernel's /proc view of the groups,
kernel release).  Tests compare decoded values with the manifest.
"""

from __future__ import annotations

import argparse
import errno
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
from pathlib import Path

from scripts.record_ct_fixtures import inside, nsrun, run
from ulogpy.netlink import nflog, nlsock

C4, R4C, R4S, S4 = "10.92.1.2", "10.92.1.1", "10.92.2.1", "10.92.2.2"
C6, R6C, R6S, S6 = "fd00:92:1::2", "fd00:92:1::1", "fd00:92:2::1", "fd00:92:2::2"
NOBODY = 65534
#: Group 13's flood: `packets` while the socket is not read, then `tail` more.
FLOOD = dict(group=13, src="10.92.1.2", dst="10.92.2.2", sport=40008, dport=5008, payload=200,
             packets=300, tail=5)

NFT_R = """
table inet rec {
    chain forward_log {
        type filter hook forward priority filter; policy accept;
        udp dport { 5001, 5005, 5006 } meta mark set 0x2a
        udp dport 5001 log group 10 prefix "fwd "
        udp dport 5005 log group 10 snaplen 64 prefix "snap "
        udp dport 5006 log group 11 prefix "ct "
        udp dport 5008 log group 13 prefix "flood "
    }
    chain input_log {
        type filter hook input priority filter; policy accept;
        icmp type echo-request log group 10
        icmpv6 type echo-request log group 10
        iifname "lo" udp dport 5004 log group 10 prefix "lo "
    }
    chain output_log {
        type filter hook output priority filter; policy accept;
        udp dport 5003 log group 10 prefix "out "
    }
}
"""
NFT_S = """
table bridge rec {
    chain input_log {
        type filter hook input priority filter; policy accept;
        udp dport 5007 log group 12 prefix "br "
    }
}
"""

# What was sent; `hook`, `indev`, `outdev`, `physindev` ("namespace:device") are what the
# kernel must report; the link header goes from `hw_from` to `hw_to`.
# fmt: off
PACKETS = [
    dict(name="fwd4", group=10, family=2, proto=0x0800, hook=2, src=C4, dst=S4, sport=40001,
         dport=5001, payload=100, prefix="fwd ", mark=0x2a, indev="r:r0", outdev="r:r1",
         hw_from="c:c0", hw_to="r:r0"),
    dict(name="fwd6", group=10, family=10, proto=0x86DD, hook=2, src=C6, dst=S6, sport=40001,
         dport=5001, payload=100, prefix="fwd ", mark=0x2a, indev="r:r0", outdev="r:r1",
         hw_from="c:c0", hw_to="r:r0"),
    dict(name="icmp4", group=10, family=2, proto=0x0800, hook=1, src=C4, dst=R4C, icmp_id=7001,
         payload=24, prefix="", mark=0, indev="r:r0", hw_from="c:c0", hw_to="r:r0"),
    dict(name="icmp6", group=10, family=10, proto=0x86DD, hook=1, src=C6, dst=R6C,
         icmp_id=7002, payload=24, prefix="", mark=0, indev="r:r0", hw_from="c:c0", hw_to="r:r0"),
    dict(name="out4", group=10, family=2, proto=0x0800, hook=3, src=R4S, dst=S4, dport=5003,
         payload=33, prefix="out ", mark=0, outdev="r:r1", uid=NOBODY, gid=NOBODY),
    dict(name="out6", group=10, family=10, proto=0x86DD, hook=3, src=R6S, dst=S6, dport=5003,
         payload=33, prefix="out ", mark=0, outdev="r:r1", uid=0, gid=0),
    dict(name="lo4", group=10, family=2, proto=0x0800, hook=1, src="127.0.0.1",
         dst="127.0.0.1", dport=5004, payload=10, prefix="lo ", mark=0, indev="r:lo",
         hw_from="r:lo", hw_to="r:lo"),
    dict(name="snap4", group=10, family=2, proto=0x0800, hook=2, src=C4, dst=S4, sport=40005,
         dport=5005, payload=500, snaplen=64, prefix="snap ", mark=0x2a, indev="r:r0",
         outdev="r:r1", hw_from="c:c0", hw_to="r:r0"),
    dict(name="ct4", group=11, family=2, proto=0x0800, hook=2, src=C4, dst=S4, sport=40006,
         dport=5006, payload=20, count=5, prefix="ct ", mark=0x2a, indev="r:r0", outdev="r:r1",
         hw_from="c:c0", hw_to="r:r0"),
    dict(name="br4", group=12, family=7, proto=0x0800, hook=1, src=C4, dst=S4, sport=40007,
         dport=5007, payload=40, prefix="br ", mark=0, indev="s:br0",
         physindev="s:s0", hw_from="r:r1", hw_to="s:br0"),
]
# fmt: on
GROUP_SETUP = {
    10: dict(ns="r", flags=nflog.NFULNL_CFG_F_SEQ),
    11: dict(ns="r", flags=nflog.NFULNL_CFG_F_SEQ | nflog.NFULNL_CFG_F_SEQ_GLOBAL
             | nflog.NFULNL_CFG_F_CONNTRACK, qthresh=3, timeout=10),
    12: dict(ns="s", flags=nflog.NFULNL_CFG_F_SEQ),
    13: dict(ns="r", flags=nflog.NFULNL_CFG_F_SEQ, rcvbuf=2048),
}


def setup(c: str, r: str, s: str) -> None:
    for ns in (c, r, s):
        run("ip", "netns", "add", ns)
        run("ip", "-n", ns, "link", "set", "lo", "up")
        nsrun(ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0",
              "net.ipv6.conf.default.accept_dad=0")
    run("ip", "-n", c, "link", "add", "c0", "type", "veth", "peer", "name", "r0", "netns", r)
    run("ip", "-n", r, "link", "add", "r1", "type", "veth", "peer", "name", "s0", "netns", s)
    run("ip", "-n", s, "link", "add", "br0", "type", "bridge")
    run("ip", "-n", s, "link", "set", "s0", "master", "br0")
    run("ip", "-n", s, "link", "set", "s0", "up")
    for ns, dev, a4, a6 in (
        (c, "c0", C4, C6),
        (r, "r0", R4C, R6C),
        (r, "r1", R4S, R6S),
        (s, "br0", S4, S6),
    ):
        run("ip", "-n", ns, "addr", "add", f"{a4}/24", "dev", dev)
        run("ip", "-n", ns, "-6", "addr", "add", f"{a6}/64", "dev", dev, "nodad")
        run("ip", "-n", ns, "link", "set", dev, "up")
    run("ip", "-n", c, "route", "add", "default", "via", R4C)
    run("ip", "-n", c, "-6", "route", "add", "default", "via", R6C)
    run("ip", "-n", s, "route", "add", "default", "via", R4S)
    run("ip", "-n", s, "-6", "route", "add", "default", "via", R6S)
    nsrun(r, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
    nsrun(c, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
    nsrun(r, "nft", "-f", "-", stdin=NFT_R)
    nsrun(s, "nft", "-f", "-", stdin=NFT_S)
    # Neighbour entries first, so no packet waits for ARP/ND (and none is logged twice).
    for ns, dst in ((c, S4), (c, S6), (r, S4), (r, S6)):
        for attempt in range(10):
            if subprocess.run(["ip", "netns", "exec", ns, "ping", "-c1", "-W1", dst],
                              capture_output=True, check=False).returncode == 0:
                break
            time.sleep(0.2 * attempt)
        else:
            raise RuntimeError(f"{dst} unreachable from {ns}")


def links(ns: str) -> dict[str, dict]:
    out = {}
    for link in json.loads(nsrun(ns, "ip", "-j", "link", "show")):
        out[link["ifname"]] = dict(ifindex=link["ifindex"], mac=link.get("address", ""),
                                   type=link.get("link_type", ""))
    return out


def open_group(ns: str, group: int, spec: dict) -> socket.socket:
    with inside(ns):
        sock = nlsock.open_socket()
    seq = nlsock.next_seq
    nlsock.request_ack(sock, nflog.build_bind(seq(), group))
    nlsock.request_ack(sock, nflog.build_mode(seq(), group))
    try:
        nlsock.request_ack(sock, nflog.build_flags(seq(), group, spec["flags"]))
    except nlsock.NetlinkError as exc:
        # Kernels without CONFIG_NETFILTER_NETLINK_GLUE_CT refuse the conntrack flag.
        if not spec["flags"] & nflog.NFULNL_CFG_F_CONNTRACK:
            raise
        spec["flags_refused"] = dict(flags=spec["flags"], errno=exc.errno)
        spec["flags"] &= ~nflog.NFULNL_CFG_F_CONNTRACK
        nlsock.request_ack(sock, nflog.build_flags(seq(), group, spec["flags"]))
    if "qthresh" in spec:
        nlsock.request_ack(sock, nflog.build_qthreshold(seq(), group, spec["qthresh"]))
        nlsock.request_ack(sock, nflog.build_timeout(seq(), group, spec["timeout"]))
    spec["portid"] = sock.getsockname()[0]
    if "rcvbuf" in spec:
        spec["rcvbuf_kernel"] = nlsock.set_rcvbuf(sock, spec["rcvbuf"])
    else:
        spec["rcvbuf_kernel"] = nlsock.set_rcvbuf(sock, 4 << 20)
    return sock


class Listener(threading.Thread):
    """Collects every datagram (and every ENOBUFS) of the group sockets."""

    def __init__(self, socks: dict[int, socket.socket]) -> None:
        super().__init__(daemon=True)
        self.socks = socks
        self.paused: set[int] = set()
        self.records: list[dict] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        by_fd = {s.fileno(): g for g, s in self.socks.items()}
        while not self.stopping.is_set():
            watch = [s for g, s in self.socks.items() if g not in self.paused]
            ready, _, _ = select.select(watch, [], [], 0.05)
            for sock in ready:
                self.read(by_fd[sock.fileno()], sock)

    def read(self, group: int, sock: socket.socket) -> None:
        try:
            data = sock.recv(1 << 17, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise
            self.records.append(dict(group=group, kind="enobufs", recv_ns=time.time_ns(),
                                     hex=""))
            return
        self.records.append(dict(group=group, kind="data", recv_ns=time.time_ns(),
                                 hex=data.hex()))


def udp(ns: str, p: dict, count: int = 1, as_user: int | None = None) -> None:
    af = socket.AF_INET6 if ":" in p["dst"] else socket.AF_INET
    if as_user is not None:
        # The socket's owner is the creating process's fsuid: send from a child that
        # dropped to `as_user` (setpriv), inside the namespace.
        code = (f"import socket; s = socket.socket({int(af)}, socket.SOCK_DGRAM); "
                f"s.sendto(b'o' * {p['payload']}, ({p['dst']!r}, {p['dport']}))")
        nsrun(ns, "setpriv", f"--reuid={as_user}", f"--regid={as_user}", "--clear-groups",
              "/usr/bin/python3", "-c", code)
        return
    with inside(ns):
        sock = socket.socket(af, socket.SOCK_DGRAM)
    with sock:
        if "sport" in p:
            sock.bind(("", p["sport"]))
        for _ in range(count):
            sock.sendto(b"u" * p["payload"], (p["dst"], p["dport"]))
            time.sleep(0.01)


def ping(ns: str, p: dict) -> None:
    af = socket.AF_INET6 if ":" in p["dst"] else socket.AF_INET
    proto = socket.IPPROTO_ICMPV6 if af == socket.AF_INET6 else socket.IPPROTO_ICMP
    with inside(ns):
        sock = socket.socket(af, socket.SOCK_DGRAM, proto)
    with sock:
        sock.bind((p["src"], p["icmp_id"]))
        sock.settimeout(3)
        etype = 128 if af == socket.AF_INET6 else 8
        sock.sendto(struct.pack("!BBHHH", etype, 0, 0, 0, 1) + b"p" * (p["payload"] - 8),
                    (p["dst"], 0))
        sock.recvfrom(2048)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="tests/fixtures/nflog", type=Path)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("must run as root")
    tag = f"ulogpy-nfrec-{random.randint(1000, 99999)}"
    c, r, s = f"{tag}-c", f"{tag}-r", f"{tag}-s"
    names = {"c": c, "r": r, "s": s}
    socks: dict[int, socket.socket] = {}
    try:
        setup(c, r, s)
        interfaces = {role: links(ns) for role, ns in names.items()}
        for group, spec in GROUP_SETUP.items():
            socks[group] = open_group(names[spec["ns"]], group, spec)
        listener = Listener(socks)
        listener.paused.add(13)
        listener.start()
        try:
            time.sleep(0.1)
            for p in PACKETS:
                if "icmp_id" in p:
                    ping(c, p)
                elif p["name"].startswith("out"):
                    udp(r, p, as_user=p["uid"] if p["uid"] else None)
                elif p["name"] == "lo4":
                    udp(r, p)
                else:
                    udp(c, p, p.get("count", 1))
                time.sleep(0.05)
            # Overrun: group 13 is not read while a flood arrives (the kernel's flush
            # timer fires meanwhile), then drained; a few packets after it reveal the gap.
            with inside(c):
                fsock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            with fsock:
                fsock.bind(("", FLOOD["sport"]))
                for _ in range(FLOOD["packets"]):
                    fsock.sendto(b"f" * FLOOD["payload"], (FLOOD["dst"], FLOOD["dport"]))
                time.sleep(1.5)
                listener.paused.discard(13)
                time.sleep(0.3)
                for _ in range(FLOOD["tail"]):
                    fsock.sendto(b"t" * FLOOD["payload"], (FLOOD["dst"], FLOOD["dport"]))
            # The kernel flushes a group's batch after 1 s (default flush timeout).
            time.sleep(1.5)
            with inside(r):
                proc_r = Path("/proc/net/netfilter/nfnetlink_log").read_text()
        finally:
            listener.stopping.set()
            listener.join()
    finally:
        for sock in socks.values():
            sock.close()
        for ns in (c, r, s):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)

    records = sorted(listener.records, key=lambda rec: rec["recv_ns"])
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "messages.jsonl", "w") as fh:
        for i, rec in enumerate(records):
            fh.write(json.dumps(dict(n=i, **rec)) + "\n")
    manifest = dict(
        recorded_by="scripts/record_nflog_fixtures.py",
        kernel=platform.release(),
        interfaces=interfaces,
        addresses=dict(C4=C4, R4C=R4C, R4S=R4S, S4=S4, C6=C6, R6C=R6C, R6S=R6S, S6=S6),
        packets=PACKETS,
        groups={str(g): {k: v for k, v in spec.items()} for g, spec in GROUP_SETUP.items()},
        flood=FLOOD,
        proc_nfnetlink_log_r=proc_r,
        nft_r=NFT_R,
        nft_s=NFT_S,
    )
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"{len(records)} datagrams written to {args.out}")


if __name__ == "__main__":
    main()
