"""Tiny traffic generator run *inside* a network namespace (stdlib only).

Executed as a script by ``tests.netns`` helpers, e.g.::

    ip netns exec NS python3 tests/traffic.py tcp-server --bind 10.77.2.2 --port 0
    ip netns exec NS python3 tests/traffic.py tcp-client --addr 10.77.2.2 --port 40000

Servers print ``READY <port>`` on stdout once they listen, serve ``--count`` clients and
exit (``tcp-collect``: one client, whose bytes it writes to a file).  Clients print one
JSON object describing what they did (local address/port, reply).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import select
import socket
import struct
import sys
import time


def _family(addr: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(addr).version == 6 else socket.AF_INET


def _ready(port: int) -> None:
    sys.stdout.write(f"READY {port}\n")
    sys.stdout.flush()


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------------- TCP


def tcp_server(args: argparse.Namespace) -> int:
    fam = _family(args.bind)
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((args.bind, args.port))
        s.listen(16)
        s.settimeout(args.timeout)
        _ready(s.getsockname()[1])
        for _ in range(args.count):
            conn, _peer = s.accept()
            with conn:
                conn.settimeout(args.timeout)
                data = b""
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(b"echo:" + data)
    return 0


def tcp_client(args: argparse.Namespace) -> int:
    fam = _family(args.addr)
    with socket.socket(fam, socket.SOCK_STREAM) as c:
        c.settimeout(args.timeout)
        if args.sport:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            c.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", args.sport))
        c.connect((args.addr, args.port))
        local = c.getsockname()
        c.sendall(args.payload.encode())
        c.shutdown(socket.SHUT_WR)
        reply = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            reply += chunk
    _emit({"src": local[0], "sport": local[1], "reply": reply.decode(errors="replace")})
    return 0


# --------------------------------------------------------------------------------- UDP


def udp_server(args: argparse.Namespace) -> int:
    fam = _family(args.bind)
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((args.bind, args.port))
        s.settimeout(args.timeout)
        _ready(s.getsockname()[1])
        for _ in range(args.count):
            data, peer = s.recvfrom(65536)
            s.sendto(b"echo:" + data, peer)
    return 0


def udp_client(args: argparse.Namespace) -> int:
    fam = _family(args.addr)
    with socket.socket(fam, socket.SOCK_DGRAM) as c:
        c.settimeout(args.timeout)
        if args.sport:
            c.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", args.sport))
        c.connect((args.addr, args.port))
        local = c.getsockname()
        c.send(args.payload.encode())
        reply = b""
        if not args.no_reply:
            reply = c.recv(65536)
    _emit({"src": local[0], "sport": local[1], "reply": reply.decode(errors="replace")})
    return 0


def udp_burst(args: argparse.Namespace) -> int:
    """One datagram from each of `count` ports (`--vary sport`: our source port, to
    `--port`) or to each of them (`--vary dport`): `count` distinct UDP flows."""
    fam = _family(args.addr)
    for p in range(args.first, args.first + args.count):
        with socket.socket(fam, socket.SOCK_DGRAM) as s:
            if args.vary == "sport":
                s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", p))
            s.sendto(b"x", (args.addr, args.port if args.vary == "sport" else p))
    return 0


# --------------------------------------------------------------------------------- TCP sink


def tcp_collect(args: argparse.Namespace) -> int:
    """Accept one connection and keep what it sends, until it closes or `--seconds`
    have passed, into `--out` (a collector for an output's stream)."""
    with socket.socket(_family(args.bind), socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((args.bind, args.port))
        s.listen(4)
        _ready(s.getsockname()[1])
        s.settimeout(args.seconds)
        conn, _ = s.accept()
        end = time.monotonic() + args.seconds
        data = b""
        with conn:
            conn.settimeout(0.2)
            while time.monotonic() < end:
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                data += chunk
    with open(args.out, "wb") as f:
        f.write(data)
    return 0


# --------------------------------------------------------------------------------- ICMP


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s & 0xFFFF) + (s >> 16)
    s += s >> 16
    return ~s & 0xFFFF


def icmp_echo(args: argparse.Namespace) -> int:
    """One ICMP/ICMPv6 echo request through a raw socket; waits for the matching reply."""
    fam = _family(args.addr)
    ident = args.id if args.id is not None else (os.getpid() & 0xFFFF)
    seq = args.seq
    payload = args.payload.encode()
    if fam == socket.AF_INET6:
        proto, req_type, rep_type = socket.IPPROTO_ICMPV6, 128, 129
    else:
        proto, req_type, rep_type = socket.IPPROTO_ICMP, 8, 0
    with socket.socket(fam, socket.SOCK_RAW, proto) as s:
        pkt = struct.pack("!BBHHH", req_type, 0, 0, ident, seq) + payload
        if fam == socket.AF_INET:  # the kernel computes the ICMPv6 checksum itself
            pkt = pkt[:2] + struct.pack("!H", _csum(pkt)) + pkt[4:]
        s.sendto(pkt, (args.addr, 0))
        deadline = time.monotonic() + args.timeout
        got = False
        src = None
        while not got:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([s], [], [], left)
            if not r:
                break
            data, peer = s.recvfrom(65536)
            if fam == socket.AF_INET:
                data = data[(data[0] & 0x0F) * 4 :]
            if len(data) < 8:
                continue
            typ, _code, _ck, rid, rseq = struct.unpack("!BBHHH", data[:8])
            if typ == rep_type and rid == ident and rseq == seq:
                got = True
                src = peer[0]
    _emit({"id": ident, "seq": seq, "reply": got, "peer": src})
    return 0 if got else 1


# -------------------------------------------------------------------------------- probe


def probe(args: argparse.Namespace) -> int:
    """One TCP connect or UDP datagram to a port that may be closed or filtered.

    Reports what came back: ``connected``/``reply``, ``refused`` (a RST, or an ICMP
    port unreachable on the connected UDP socket) or ``timeout`` (dropped).
    """
    fam = _family(args.addr)
    kind = socket.SOCK_STREAM if args.proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(fam, kind) as c:
        c.settimeout(args.timeout)
        try:
            c.connect((args.addr, args.port))
            if args.proto == "udp":
                c.send(b"probe")
                c.recv(65536)
                outcome = "reply"
            else:
                outcome = "connected"
        except ConnectionRefusedError:
            outcome = "refused"
        except TimeoutError:
            outcome = "timeout"
        local = c.getsockname()
    _emit({"src": local[0], "sport": local[1], "outcome": outcome})
    return 0


# --------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="traffic")
    sub = p.add_subparsers(dest="cmd", required=True)

    for name in ("tcp-server", "udp-server"):
        sp = sub.add_parser(name)
        sp.add_argument("--bind", required=True)
        sp.add_argument("--port", type=int, default=0)
        sp.add_argument("--count", type=int, default=1)
        sp.add_argument("--timeout", type=float, default=10.0)

    for name in ("tcp-client", "udp-client"):
        sp = sub.add_parser(name)
        sp.add_argument("--addr", required=True)
        sp.add_argument("--port", type=int, required=True)
        sp.add_argument("--sport", type=int, default=0)
        sp.add_argument("--payload", default="ping")
        sp.add_argument("--timeout", type=float, default=5.0)
        if name == "udp-client":
            sp.add_argument("--no-reply", action="store_true")

    sp = sub.add_parser("icmp-echo")
    sp.add_argument("--addr", required=True)
    sp.add_argument("--id", type=int, default=None)
    sp.add_argument("--seq", type=int, default=1)
    sp.add_argument("--payload", default="ulogpy-ping")
    sp.add_argument("--timeout", type=float, default=3.0)

    sp = sub.add_parser("probe")
    sp.add_argument("--proto", choices=("tcp", "udp"), required=True)
    sp.add_argument("--addr", required=True)
    sp.add_argument("--port", type=int, required=True)
    sp.add_argument("--timeout", type=float, default=1.0)

    sp = sub.add_parser("udp-burst")
    sp.add_argument("--addr", required=True)
    sp.add_argument("--first", type=int, required=True)
    sp.add_argument("--count", type=int, required=True)
    sp.add_argument("--vary", choices=("sport", "dport"), default="dport")
    sp.add_argument("--port", type=int, default=9)

    sp = sub.add_parser("tcp-collect")
    sp.add_argument("--bind", required=True)
    sp.add_argument("--port", type=int, required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument("--seconds", type=float, required=True)

    args = p.parse_args(argv)
    handler = {
        "tcp-server": tcp_server,
        "tcp-client": tcp_client,
        "udp-server": udp_server,
        "udp-client": udp_client,
        "icmp-echo": icmp_echo,
        "probe": probe,
        "udp-burst": udp_burst,
        "tcp-collect": tcp_collect,
    }[args.cmd]
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
