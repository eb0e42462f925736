"""NFCT's accept filters (`accept_src_filter`, `accept_dst_filter`, `accept_proto_filter`).

ulogd compiles them into a kernel socket filter; ulogpy applies the same
rules in user space right after decoding, before any plugin runs.  Items
of one list are OR-ed; an address item is `addr/len`, IPv6 if it contains
`:`; protocols are names from /etc/protocols.

Which flows of the *other* family pass was measured against ulogd 2.0.8
(tests/live/test_nfct_differential.py keeps it honest):
* a family with no item in `accept_src_filter` is not restricted by it;
* the same holds for `accept_dst_filter`, except that a destination list
  with any IPv4 item rejects every IPv6 flow, even one matching an IPv6
  item (ulogd's kernel filter never reaches its IPv6 part then).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass


class FilterSyntaxError(ValueError):
    pass


def parse_networks(text: str) -> tuple[list[ipaddress.IPv4Network], list[ipaddress.IPv6Network]]:
    v4: list[ipaddress.IPv4Network] = []
    v6: list[ipaddress.IPv6Network] = []
    for item in filter(None, text.split(",")):
        if "/" not in item:
            raise FilterSyntaxError(f"'{item}': No network specified")
        try:
            net = ipaddress.ip_network(item, strict=False)
        except ValueError as exc:
            raise FilterSyntaxError(f"'{item}': {exc}") from None
        (v6 if net.version == 6 else v4).append(net)  # type: ignore[arg-type]
    return v4, v6


def parse_protocols(text: str) -> set[int]:
    protos = set()
    for item in filter(None, text.split(",")):
        try:
            protos.add(socket.getprotobyname(item))
        except OSError:
            raise FilterSyntaxError(f"'{item}': Unknown protocol") from None
    return protos


def check_networks(text: str) -> str | None:
    try:
        parse_networks(text)
    except FilterSyntaxError as exc:
        return str(exc)
    return None


def check_protocols(text: str) -> str | None:
    try:
        parse_protocols(text)
    except FilterSyntaxError as exc:
        return str(exc)
    return None


@dataclass
class _AddressRule:
    key: str
    v4: list[tuple[int, int]]  # (network int, mask int)
    v6: list[tuple[int, int]]
    ipv4_excludes_ipv6: bool

    def accepts(self, record: dict) -> bool:
        if record.get("oob.family") == 2:
            rules = self.v4
        elif self.ipv4_excludes_ipv6 and self.v4:
            return False
        else:
            rules = self.v6
        if not rules:
            return True
        value = int.from_bytes(record.get(self.key, b""), "big")
        return any(value & mask == net for net, mask in rules)


class FlowFilter:
    """All three lists of one NFCT instance; `accepts(record)` is the per-event test."""

    def __init__(self, src: str, dst: str, proto: str) -> None:
        self.rules: list[_AddressRule] = []
        for key, text in (("orig.ip.saddr", src), ("orig.ip.daddr", dst)):
            if text:
                v4, v6 = parse_networks(text)
                self.rules.append(
                    _AddressRule(key, _ints(v4), _ints(v6), key == "orig.ip.daddr")
                )
        self.protocols = parse_protocols(proto) if proto else None

    @property
    def active(self) -> bool:
        return bool(self.rules) or self.protocols is not None

    def accepts(self, record: dict) -> bool:
        if self.protocols is not None and record.get("orig.ip.protocol") not in self.protocols:
            return False
        return all(rule.accepts(record) for rule in self.rules)


def _ints(nets) -> list[tuple[int, int]]:
    return [(int(n.network_address), int(n.netmask)) for n in nets]
