"""The flow and query model: who held which public IP:port from when to when.

A flow holds its public IP:port over [start, end]; `end` None means still
open.  A flow matches a query when that interval overlaps
[at - window, at + window]; matches are ranked by how far `at` lies from
the interval, so the flow that held the port at `at` comes first and
earlier or later users of a reused port follow.

Logged starts are late: the kernel stamps only DESTROY events, so a NEW
record's start is when the logger received it (spec 4.2), milliseconds
after the first packet, more under load.  An end comes from the kernel.
So a flow is taken to hold its port from START_SLACK_S before its logged
start; among flows that all "held" the port, the one whose logged interval
really contains `at` ranks first.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass

from ulogpy.tools.natlookup.errors import LookupFailed

#: Protocol numbers and the names the output uses (/etc/protocols spellings where short).
PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 33: "dccp", 47: "gre", 50: "esp", 51: "ah",
               58: "icmpv6", 132: "sctp", 136: "udplite"}
PROTO_ALIASES = {"ipv6-icmp": 58, "icmp6": 58}
#: Protocols whose conntrack tuple has ports (ulogd's NFCT gives l4 ports only for these).
PORTED = frozenset({6, 17, 33, 132, 136})
DEFAULT_WINDOW = 5.0
#: How much earlier than its logged start a flow may have begun (NEW reception delay).
START_SLACK_S = 1.0


def proto_number(text: str) -> int:
    """`tcp`, `UDP`, `icmpv6`, `6` ... -> the IP protocol number."""
    name = text.strip().lower()
    if name.isdigit() and int(name) <= 255:
        return int(name)
    by_name = {v: k for k, v in PROTO_NAMES.items()} | PROTO_ALIASES
    if name in by_name:
        return by_name[name]
    raise LookupFailed(
        f"--proto {text!r}: unknown protocol; use one of "
        f"{', '.join(sorted(by_name))} or a number 0-255"
    )


def proto_name(number: int | None) -> str | None:
    if number is None:
        return None
    return PROTO_NAMES.get(number, str(number))


def normalize_ip(text: str, what: str) -> str:
    """The address in the notation inet_ntop (so IP2STR) writes; LookupFailed if not one."""
    try:
        return ipaddress.ip_address(text.strip()).compressed
    except ValueError:
        raise LookupFailed(f"{what} {text!r}: not an IPv4 or IPv6 address") from None


def same_ip(a: str | None, b: str) -> bool:
    """Address equality that survives notation differences (b is normalized)."""
    if a is None:
        return False
    if a == b:
        return True
    try:
        return ipaddress.ip_address(a.split("/", 1)[0]).compressed == b
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Query:
    ip: str  # normalized public address
    port: int | None  # None: match on the address alone (portless protocols)
    at: float  # epoch seconds
    window: float = DEFAULT_WINDOW
    proto: int | None = None
    remote_ip: str | None = None
    remote_port: int | None = None

    @property
    def lo(self) -> float:
        return self.at - self.window

    @property
    def hi(self) -> float:
        return self.at + self.window


@dataclass(slots=True)
class Flow:
    """One conntrack entry as an interval; the JSON output's fields plus ranking data."""

    proto: int | None
    inside_ip: str | None
    inside_port: int | None
    public_ip: str | None
    public_port: int | None
    remote_ip: str | None
    remote_port: int | None
    start: float | None  # None: unknown (a DESTROY without start time)
    end: float | None  # None: still open
    orig_bytes: int | None = None
    reply_bytes: int | None = None
    zone: int | None = None
    mark: int | None = None
    source: str = ""
    #: The start is the kernel's time stamp, not a reception time: no START_SLACK_S.
    start_exact: bool = False

    # -- the interval ------------------------------------------------------------
    def bounds(self, slack: float = START_SLACK_S) -> tuple[float, float]:
        """When the flow may have held its port: from `slack` before the logged start
        (see the module doc; none when the start is the kernel's stamp) to the end.  An
        unknown start counts as the end instant."""
        end = math.inf if self.end is None else self.end
        if self.start_exact:
            slack = 0.0
        start = self.start - slack if self.start is not None else end
        return start, end

    def distance(self, at: float, slack: float = START_SLACK_S) -> float:
        """Seconds between `at` and the interval; 0 when the flow held the port at `at`."""
        start, end = self.bounds(slack)
        if at < start:
            return start - at
        return at - end if at > end else 0.0

    def overlaps(self, lo: float, hi: float) -> bool:
        start, end = self.bounds()
        return start <= hi and end >= lo

    def matches(self, q: Query) -> bool:
        """Every condition of the query, checked exactly (sources prefilter coarsely)."""
        if not same_ip(self.public_ip, q.ip):
            return False
        if q.port is not None and self.public_port != q.port:
            return False
        if q.proto is not None and self.proto != q.proto:
            return False
        if q.remote_ip is not None and not same_ip(self.remote_ip, q.remote_ip):
            return False
        if q.remote_port is not None and self.remote_port != q.remote_port:
            return False
        return self.overlaps(q.lo, q.hi)


def rank(flows: list[Flow], q: Query) -> list[Flow]:
    """Matching flows, best first: nearest to `at`; then nearest to the logged interval
    itself; known start before unknown; then the latest start (of two flows both holding
    the port, the newer one)."""
    found = [f for f in dedupe(flows) if f.matches(q)]
    found.sort(key=lambda f: (f.distance(q.at), f.distance(q.at, 0.0), f.start is None,
                              -(f.start or 0.0)))
    return found


#: Two records of one tuple starting closer than this are one flow seen by two sources
#: (NEW reception times of two daemons differ by milliseconds; a tuple cannot be reused
#: that fast, its conntrack entry outlives the connection).
SAME_FLOW_S = 0.5


def dedupe(flows: list[Flow]) -> list[Flow]:
    """One entry per flow when several sources logged it (e.g. the JSON and SQLite
    outputs of one config).  The most complete copy stays: one that knows the end
    beats one still open (its source has not seen the DESTROY yet)."""
    kept: list[Flow] = []
    groups: dict[tuple, list[int]] = {}
    for f in flows:
        ident = (f.proto, f.inside_ip, f.inside_port, f.public_ip, f.public_port,
                 f.remote_ip, f.remote_port)
        slots = groups.setdefault(ident, [])
        for i in slots:
            if _same_flow(kept[i], f):
                if _completeness(f) > _completeness(kept[i]):
                    kept[i] = f
                break
        else:
            slots.append(len(kept))
            kept.append(f)
    return kept


def _same_flow(a: Flow, b: Flow) -> bool:
    if a.start is None or b.start is None:
        return a.start is None and b.start is None and a.end == b.end
    return abs(a.start - b.start) < SAME_FLOW_S


def _completeness(f: Flow) -> int:
    return (f.end is not None) * 2 + (f.start is not None)
