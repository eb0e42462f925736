"""Helpers for live tests: private network namespaces, a NAT topology, traffic, conntrack.

Everything here runs *inside* namespaces created by the helpers themselves (names
``ulogpy-<role>-<6 hex>``); nothing touches the main namespace's interfaces, firewall or
sysctls.  Needs root, ``ip`` (iproute2), ``nft`` and ``conntrack``.

Typical use::

    with NatTopology() as topo:
        flows = topo.generate_flows()            # TCP/UDP/ICMP, v4+v6, lan -> wan
        entries = conntrack_list(topo.fw, family=6)
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import json
import os
import random
import secrets
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "CONNTRACK_FAST_TIMEOUTS",
    "CONNTRACK_SHORT_UDP_ICMP",
    "CtEntry",
    "Flow",
    "NatTopology",
    "Netns",
    "NetnsError",
    "conntrack_flush",
    "conntrack_list",
    "conntrack_reap",
    "free_port",
    "icmp_echo",
    "live_skip_reason",
    "ping",
    "probe",
    "tcp_collector",
    "tcp_echo",
    "udp_burst",
    "udp_echo",
    "wait_until",
]

TRAFFIC_SCRIPT = Path(__file__).with_name("traffic.py")
NETNS_DIR = Path("/run/netns")

_LIVE: set[Netns] = set()


class NetnsError(RuntimeError):
    pass


def live_skip_reason() -> str | None:
    """None when live (namespace) tests can run here, else a human readable reason."""
    if os.geteuid() != 0:
        return "live tests need root (network namespaces, nftables, conntrack)"
    for tool in ("ip", "nft", "conntrack"):
        if not any(
            Path(d, tool).exists()
            for d in os.environ.get("PATH", "").split(":") + ["/usr/sbin", "/sbin"]
        ):
            return f"live tests need the '{tool}' command (run scripts/setup)"
    return None


def wait_until(
    pred: Callable[[], object], timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> object:
    """Poll ``pred`` until it returns a truthy value (returned); TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what or pred}")
        time.sleep(interval)


def _ip_family(addr: str) -> int:
    return ipaddress.ip_address(addr).version


# ============================================================================ Netns


class Netns:
    """A private network namespace ``ulogpy-<role>-<6 hex>``; context manager.

    ``create()`` adds it and brings ``lo`` up; ``delete()`` kills every process still
    inside (``ip netns pids``) and removes it (its interfaces go with it).
    """

    def __init__(self, role: str = "test", *, name: str | None = None, create: bool = True):
        if name is None:
            while True:
                name = f"ulogpy-{role}-{secrets.token_hex(3)}"
                if not (NETNS_DIR / name).exists():
                    break
        self.role = role
        self.name = name
        self.procs: list[subprocess.Popen] = []
        self.created = False
        if create:
            self.create()

    # -- lifecycle -------------------------------------------------------------------
    def create(self) -> Netns:
        if self.created:
            return self
        _host(["ip", "netns", "add", self.name])
        self.created = True
        _LIVE.add(self)
        self.run(["ip", "link", "set", "lo", "up"])
        return self

    def pids(self) -> list[int]:
        r = subprocess.run(
            ["ip", "netns", "pids", self.name], capture_output=True, text=True, check=False
        )
        return [int(x) for x in r.stdout.split()]

    def kill_all(self, grace: float = 2.0) -> None:
        """SIGTERM every process in the namespace, SIGKILL what is left after ``grace``."""
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.terminate()
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=grace)
        self.procs.clear()

    def delete(self) -> None:
        if not self.created:
            return
        try:
            self.kill_all()
        finally:
            subprocess.run(["ip", "netns", "delete", self.name], capture_output=True, check=False)
            self.created = False
            _LIVE.discard(self)

    def __enter__(self) -> Netns:
        return self.create()

    def __exit__(self, *exc) -> None:
        self.delete()

    def __repr__(self) -> str:
        return f"Netns({self.name!r})"

    # -- running things inside -------------------------------------------------------
    def cmd(self, cmd: Sequence[str]) -> list[str]:
        """The argv that runs ``cmd`` inside this namespace."""
        return ["ip", "netns", "exec", self.name, *[str(c) for c in cmd]]

    def run(
        self,
        cmd: Sequence[str],
        check: bool = True,
        capture: bool = True,
        *,
        input: str | None = None,
        timeout: float = 60.0,
        **kw,
    ) -> subprocess.CompletedProcess:
        """Run ``cmd`` inside the namespace and wait (text mode).  ``check`` raises
        :class:`NetnsError` with the command's stderr on a non-zero exit."""
        r = subprocess.run(
            self.cmd(cmd),
            capture_output=capture,
            text=True,
            input=input,
            timeout=timeout,
            check=False,
            **kw,
        )
        if check and r.returncode != 0:
            raise NetnsError(
                f"[{self.name}] {' '.join(map(str, cmd))} -> exit {r.returncode}\n"
                f"{r.stdout or ''}{r.stderr or ''}"
            )
        return r

    def popen(self, cmd: Sequence[str], **kw) -> subprocess.Popen:
        """Start ``cmd`` in the background inside the namespace (``subprocess.Popen``
        keyword arguments pass through).  Killed by :meth:`delete` at the latest."""
        p = subprocess.Popen(self.cmd(cmd), **kw)
        self.procs.append(p)
        return p

    def python(self, args: Sequence[str], **kw) -> subprocess.CompletedProcess:
        """Run the test interpreter (``sys.executable``) inside the namespace."""
        return self.run([sys.executable, *args], **kw)

    def sysctl(self, key: str, value: object) -> None:
        self.run(["sysctl", "-qw", f"{key}={value}"])

    def sysctls(self, values: dict[str, object]) -> None:
        if values:
            self.run(["sysctl", "-qw", *[f"{k}={v}" for k, v in values.items()]])

    def get_sysctl(self, key: str) -> str:
        return self.run(["sysctl", "-n", key]).stdout.strip()

    def nft(self, ruleset: str) -> None:
        """Load an nft ruleset (``nft -f -``) inside the namespace."""
        self.run(["nft", "-f", "-"], input=ruleset)

    def ip(self, *args: str) -> subprocess.CompletedProcess:
        return self.run(["ip", *args])


def _host(cmd: Sequence[str]) -> None:
    r = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise NetnsError(f"{' '.join(cmd)} -> exit {r.returncode}: {r.stderr.strip()}")


@atexit.register
def _cleanup_leftovers() -> None:  # pragma: no cover - safety net after crashes
    for ns in list(_LIVE):
        with contextlib.suppress(Exception):
            ns.delete()


# ============================================================================ topology


CONNTRACK_FAST_TIMEOUTS = {
    "net.netfilter.nf_conntrack_tcp_timeout_time_wait": 1,
    "net.netfilter.nf_conntrack_tcp_timeout_fin_wait": 1,
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait": 1,
    "net.netfilter.nf_conntrack_tcp_timeout_last_ack": 1,
}


# Optional extras for ``NatTopology(fw_sysctls=...)``: UDP / ICMP entries end after 1 s
# instead of 30 s (they still need a ``conntrack_reap`` or the kernel GC to be destroyed).
CONNTRACK_SHORT_UDP_ICMP = {
    "net.netfilter.nf_conntrack_udp_timeout": 1,
    "net.netfilter.nf_conntrack_udp_timeout_stream": 1,
    "net.netfilter.nf_conntrack_icmp_timeout": 1,
    "net.netfilter.nf_conntrack_icmpv6_timeout": 1,
}


class NatTopology:
    """``lan`` -- ``fw`` -- ``wan``: three namespaces joined by veth pairs.

    * lan: ``eth0`` 10.O.1.2/24, fd00:O:1::2/64, default routes via fw (.1 / ::1)
    * fw:  ``lan0`` 10.O.1.1/24, fd00:O:1::1/64; ``wan0`` 10.O.2.1/24, fd00:O:2::1/64;
      forwards v4+v6 and masquerades lan -> wan (nft table ``inet ulogpy_nat``);
      conntrack TCP close timeouts set to 1 s so flows end quickly.
    * wan: ``eth0`` 10.O.2.2/24, fd00:O:2::2/64 (no route back to lan: only NAT works)

    ``O`` is ``octet`` (random in 16..250 by default).  ``fw_sysctls`` are applied in fw
    after the ruleset (e.g. ``{"net.netfilter.nf_conntrack_acct": 1}``).
    """

    LAN_IF = "lan0"  # fw's side towards lan
    WAN_IF = "wan0"  # fw's side towards wan
    HOST_IF = "eth0"  # lan's and wan's only interface

    def __init__(
        self,
        octet: int | None = None,
        *,
        fw_sysctls: dict[str, object] | None = None,
        nat: bool = True,
    ):
        self.octet = octet if octet is not None else random.randint(16, 250)
        if not 0 <= self.octet <= 255:
            raise ValueError("octet must be 0..255")
        o = self.octet
        self.lan_ip4, self.fw_lan_ip4 = f"10.{o}.1.2", f"10.{o}.1.1"
        self.wan_ip4, self.fw_wan_ip4 = f"10.{o}.2.2", f"10.{o}.2.1"
        self.lan_ip6, self.fw_lan_ip6 = f"fd00:{o}:1::2", f"fd00:{o}:1::1"
        self.wan_ip6, self.fw_wan_ip6 = f"fd00:{o}:2::2", f"fd00:{o}:2::1"
        self.lan_net4, self.wan_net4 = f"10.{o}.1.0/24", f"10.{o}.2.0/24"
        self.lan_net6, self.wan_net6 = f"fd00:{o}:1::/64", f"fd00:{o}:2::/64"
        self.fw_sysctls = dict(fw_sysctls or {})
        self.nat = nat
        self.lan: Netns | None = None
        self.fw: Netns | None = None
        self.wan: Netns | None = None

    # addresses by family -------------------------------------------------------------
    def lan_ip(self, family: int) -> str:
        return self.lan_ip6 if family == 6 else self.lan_ip4

    def wan_ip(self, family: int) -> str:
        return self.wan_ip6 if family == 6 else self.wan_ip4

    def fw_wan_ip(self, family: int) -> str:
        return self.fw_wan_ip6 if family == 6 else self.fw_wan_ip4

    def fw_lan_ip(self, family: int) -> str:
        return self.fw_lan_ip6 if family == 6 else self.fw_lan_ip4

    @property
    def namespaces(self) -> list[Netns]:
        return [n for n in (self.lan, self.fw, self.wan) if n is not None]

    # lifecycle -------------------------------------------------------------------------
    def create(self) -> NatTopology:
        try:
            self._build()
        except BaseException:
            self.delete()
            raise
        return self

    def _build(self) -> None:
        self.lan, self.fw, self.wan = Netns("lan"), Netns("fw"), Netns("wan")
        no_dad = {
            "net.ipv6.conf.all.accept_dad": 0,
            "net.ipv6.conf.default.accept_dad": 0,
            "net.ipv6.conf.all.accept_ra": 0,
            "net.ipv6.conf.default.accept_ra": 0,
        }
        for ns in self.namespaces:
            ns.sysctls(no_dad)
        self.fw.sysctls({"net.ipv4.ip_forward": 1, "net.ipv6.conf.all.forwarding": 1})

        # veth pairs are created inside fw with the peer directly in lan / wan, so no
        # interface ever appears in the main namespace.
        self.fw.ip(
            "link",
            "add",
            self.LAN_IF,
            "type",
            "veth",
            "peer",
            "name",
            self.HOST_IF,
            "netns",
            self.lan.name,
        )
        self.fw.ip(
            "link",
            "add",
            self.WAN_IF,
            "type",
            "veth",
            "peer",
            "name",
            self.HOST_IF,
            "netns",
            self.wan.name,
        )

        def addr(ns: Netns, dev: str, a4: str, a6: str) -> None:
            ns.ip("addr", "add", f"{a4}/24", "dev", dev)
            ns.ip("-6", "addr", "add", f"{a6}/64", "dev", dev, "nodad")
            ns.ip("link", "set", dev, "up")

        addr(self.lan, self.HOST_IF, self.lan_ip4, self.lan_ip6)
        addr(self.fw, self.LAN_IF, self.fw_lan_ip4, self.fw_lan_ip6)
        addr(self.fw, self.WAN_IF, self.fw_wan_ip4, self.fw_wan_ip6)
        addr(self.wan, self.HOST_IF, self.wan_ip4, self.wan_ip6)
        self.lan.ip("route", "add", "default", "via", self.fw_lan_ip4)
        self.lan.ip("-6", "route", "add", "default", "via", self.fw_lan_ip6)

        if self.nat:
            self.fw.nft(self.nat_ruleset())
        # conntrack sysctls exist per namespace once nf_conntrack is loaded (the NAT table
        # makes sure it is); TCP teardown timeouts of 1 s end flows quickly.
        self.fw.sysctls({**CONNTRACK_FAST_TIMEOUTS, **self.fw_sysctls})
        self._wait_links()

    def nat_ruleset(self) -> str:
        return (
            "table inet ulogpy_nat {\n"
            "  chain postrouting {\n"
            "    type nat hook postrouting priority srcnat; policy accept;\n"
            f'    ip saddr {self.lan_net4} oifname "{self.WAN_IF}" masquerade\n'
            f'    ip6 saddr {self.lan_net6} oifname "{self.WAN_IF}" masquerade\n'
            "  }\n"
            "}\n"
        )

    def _wait_links(self, timeout: float = 5.0) -> None:
        """Wait until every veth is operationally up and no address is tentative."""
        checks = [
            (self.lan, self.HOST_IF),
            (self.fw, self.LAN_IF),
            (self.fw, self.WAN_IF),
            (self.wan, self.HOST_IF),
        ]

        def ready() -> bool:
            for ns, dev in checks:
                link = ns.run(["ip", "-o", "link", "show", "dev", dev]).stdout
                if "state UP" not in link and "LOWER_UP" not in link:
                    return False
                addrs = ns.run(["ip", "-o", "-6", "addr", "show", "dev", dev]).stdout
                if "tentative" in addrs:
                    return False
            return True

        wait_until(ready, timeout, what="veth links up / IPv6 addresses usable")

    def delete(self) -> None:
        for ns in (self.lan, self.fw, self.wan):
            if ns is not None:
                ns.delete()

    def __enter__(self) -> NatTopology:
        return self.create()

    def __exit__(self, *exc) -> None:
        self.delete()

    # traffic -------------------------------------------------------------------------
    def generate_flows(
        self,
        families: Iterable[int] = (4, 6),
        protos: Iterable[str] = ("tcp", "udp", "icmp"),
    ) -> list[Flow]:
        """One flow per (family, proto) from lan to wan's address; returns the flows."""
        flows = []
        for fam in families:
            for proto in protos:
                dst = self.wan_ip(fam)
                if proto == "tcp":
                    flows.append(tcp_echo(self.lan, self.wan, dst))
                elif proto == "udp":
                    flows.append(udp_echo(self.lan, self.wan, dst))
                elif proto == "icmp":
                    flows.append(icmp_echo(self.lan, dst))
                else:
                    raise ValueError(f"unknown protocol {proto!r}")
        return flows


# ============================================================================ traffic


@dataclass(frozen=True)
class Flow:
    """What a traffic helper did, as seen by the client (before NAT)."""

    proto: str  # "tcp", "udp", "icmp" (ICMPv6 too: see family)
    family: int  # 4 or 6
    src: str
    dst: str
    sport: int | None = None
    dport: int | None = None
    icmp_id: int | None = None
    reply: str | bool | None = None

    @property
    def ct_proto(self) -> str:
        """Protocol name as conntrack prints it."""
        if self.proto == "icmp" and self.family == 6:
            return "icmpv6"
        return self.proto


def _traffic_argv(*args: object) -> list[str]:
    return [sys.executable, str(TRAFFIC_SCRIPT), *[str(a) for a in args]]


def _read_ready(proc: subprocess.Popen, timeout: float) -> int:
    """Read the server's ``READY <port>`` line (with a timeout)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    buf = b""
    fd = proc.stdout.fileno()
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            proc.kill()
            raise TimeoutError("traffic server did not become ready")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            chunk = os.read(fd, 4096)
            if not chunk:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise NetnsError(f"traffic server died: {err}")
            buf += chunk
    line = buf.split(b"\n", 1)[0].decode()
    if not line.startswith("READY "):
        raise NetnsError(f"unexpected traffic server output {line!r}")
    return int(line.split()[1])


def _exchange(
    kind: str,
    client: Netns,
    server: Netns,
    addr: str,
    port: int,
    payload: str,
    timeout: float,
    sport: int = 0,
) -> Flow:
    srv = server.popen(
        _traffic_argv(f"{kind}-server", "--bind", addr, "--port", port, "--timeout", timeout),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        port = _read_ready(srv, timeout)
        r = client.run(
            _traffic_argv(
                f"{kind}-client",
                "--addr",
                addr,
                "--port",
                port,
                "--payload",
                payload,
                "--timeout",
                timeout,
                "--sport",
                sport,
            ),
            timeout=timeout + 5,
        )
        info = json.loads(r.stdout.strip().splitlines()[-1])
        srv.wait(timeout=timeout)
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()
        for f in (srv.stdout, srv.stderr):
            if f:
                f.close()
        with contextlib.suppress(ValueError):
            server.procs.remove(srv)
    if info["reply"] != f"echo:{payload}":
        raise NetnsError(f"{kind} exchange got reply {info['reply']!r}")
    return Flow(kind, _ip_family(addr), info["src"], addr, info["sport"], port, reply=info["reply"])


def tcp_echo(
    client: Netns,
    server: Netns,
    addr: str,
    port: int = 0,
    payload: str = "ping",
    timeout: float = 10.0,
    sport: int = 0,
) -> Flow:
    """Server in ``server`` bound to ``addr:port`` (0 = ephemeral); the client in
    ``client`` connects, sends ``payload``, half-closes and reads ``echo:<payload>``.
    Both sides close cleanly (FIN), so the conntrack entry ends after TIME_WAIT."""
    return _exchange("tcp", client, server, addr, port, payload, timeout, sport)


def udp_echo(
    client: Netns,
    server: Netns,
    addr: str,
    port: int = 0,
    payload: str = "ping",
    timeout: float = 10.0,
    sport: int = 0,
) -> Flow:
    """One UDP request from ``client`` to ``addr:port`` and one reply from ``server``."""
    return _exchange("udp", client, server, addr, port, payload, timeout, sport)


def icmp_echo(client: Netns, addr: str, ident: int | None = None, timeout: float = 3.0) -> Flow:
    """One ICMP (v4) / ICMPv6 echo request from ``client`` through a raw socket, waiting
    for the reply.  ``icmp_id`` of the returned Flow is the echo identifier used."""
    if ident is None:
        ident = random.randint(1, 0xFFFF)
    r = client.run(
        _traffic_argv("icmp-echo", "--addr", addr, "--id", ident, "--timeout", timeout),
        check=False,
        timeout=timeout + 5,
    )
    info = json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else {}
    if r.returncode != 0 or not info.get("reply"):
        raise NetnsError(f"[{client.name}] no ICMP echo reply from {addr}: {r.stderr}")
    src = client.run(["ip", "-o", "route", "get", addr]).stdout.split(" src ")[1].split()[0]
    return Flow("icmp", _ip_family(addr), src, addr, icmp_id=ident, reply=True)


def probe(client: Netns, proto: str, addr: str, port: int, timeout: float = 1.0) -> str:
    """A TCP connect or UDP datagram to ``addr:port``: ``connected``, ``reply``,
    ``refused`` or ``timeout`` (see ``traffic.py probe``)."""
    r = client.run(_traffic_argv("probe", "--proto", proto, "--addr", addr, "--port", port,
                                 "--timeout", timeout), timeout=timeout + 5)
    return json.loads(r.stdout.strip().splitlines()[-1])["outcome"]


def udp_burst(ns: Netns, addr: str, first: int, count: int, *, vary: str = "dport",
              port: int = 9) -> None:
    """`count` UDP flows from ``ns`` to ``addr``, one datagram each: to the ports
    ``first``... (``vary="dport"``), or from them to ``port`` (``vary="sport"``)."""
    ns.run(_traffic_argv("udp-burst", "--addr", addr, "--first", first, "--count", count,
                         "--vary", vary, "--port", port))


def tcp_collector(ns: Netns, port: int, out: Path, seconds: float,
                  bind: str = "127.0.0.1") -> subprocess.Popen:
    """A TCP listener in ``ns`` (ready when this returns) that accepts one connection and
    writes what it got in ``seconds`` (or until the peer closes) to ``out``; wait for
    the process before reading ``out``."""
    proc = ns.popen(_traffic_argv("tcp-collect", "--bind", bind, "--port", port, "--out",
                                  out, "--seconds", seconds), stdout=subprocess.PIPE)
    _read_ready(proc, 10.0)
    return proc


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free on this host's loopback now (for a server in a namespace: each
    namespace has its own ports, so it is free there too)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ping(
    ns: Netns, addr: str, count: int = 1, wait: int = 1, check: bool = True
) -> subprocess.CompletedProcess:
    """``ping -c COUNT -W WAIT addr`` inside ``ns`` (iputils-ping)."""
    return ns.run(["ping", "-n", "-c", str(count), "-W", str(wait), addr], check=check)


# ============================================================================ conntrack


@dataclass
class CtEntry:
    """One ``conntrack -L`` line: protocol, original and reply tuples (key=value maps
    holding src/dst/sport/dport or type/code/id), state and flags."""

    proto: str
    protonum: int
    orig: dict[str, str] = field(default_factory=dict)
    reply: dict[str, str] = field(default_factory=dict)
    state: str | None = None
    flags: list[str] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)
    line: str = ""

    @property
    def family(self) -> int:
        return _ip_family(self.orig["src"])


def _parse_ct_line(line: str) -> CtEntry | None:
    tok = line.split()
    if len(tok) < 3 or not tok[1].isdigit():
        return None
    e = CtEntry(proto=tok[0], protonum=int(tok[1]), line=line)
    cur = e.orig
    for t in tok[3:]:  # tok[2] is the timeout
        if t.startswith("[") and t.endswith("]"):
            e.flags.append(t[1:-1])
        elif "=" in t:
            k, v = t.split("=", 1)
            if k == "src" and "src" in e.orig:
                cur = e.reply
            if k in ("src", "dst", "sport", "dport", "type", "code", "id") and cur is not None:
                if k in cur:  # past both tuples
                    e.extra[k] = v
                else:
                    cur[k] = v
            else:
                e.extra[k] = v
        else:
            e.state = t
    return e


def conntrack_list(ns: Netns, family: int | None = None) -> list[CtEntry]:
    """Parsed ``conntrack -L`` inside ``ns``; ``family`` 4/6 or None for both."""
    fams = ("ipv4", "ipv6") if family is None else ("ipv6" if family == 6 else "ipv4",)
    out = []
    for f in fams:
        r = ns.run(["conntrack", "-L", "-f", f])
        for line in r.stdout.splitlines():
            e = _parse_ct_line(line)
            if e is not None:
                out.append(e)
    return out


def conntrack_reap(ns: Netns) -> list[CtEntry]:
    """Dump the table (``conntrack -L``), which makes the kernel kill entries whose timeout
    has run out *now*, so their DESTROY events go out at once instead of whenever the
    conntrack GC worker passes (seen: ~10 s on this kernel).  Returns the live entries."""
    return conntrack_list(ns)


def conntrack_flush(ns: Netns) -> None:
    """``conntrack -F`` inside ``ns`` (flushes both families)."""
    ns.run(["conntrack", "-F"])
