"""Packet decoders for BASE: raw L3 packet -> ulogd's header keys.

One module per protocol family, each a declarative header table (see
`ulogpy.packet.fields`) compiled at import time into a decode function.
`decode_packet` dispatches on the address family like ulogd's BASE: 2 IPv4,
10 IPv6, 7 (bridge) by the ethertype in `oob.protocol` (IPv4, IPv6, ARP).

Contract (relied on by BASE and checked by the fuzz tests): the decoders read
only ``buf[:n]``, never raise for any bytes, and a truncated packet gives the
keys of the layers that fit, each layer stopping silently when the bytes left
are too few for it.
"""

from __future__ import annotations

from ulogpy.core.keys import U16, Key
from ulogpy.packet.arp import ARP, ETH_P_ARP, decode_arp
from ulogpy.packet.fields import OK, TRUNCATED, UNKNOWN, header_keys
from ulogpy.packet.icmp import ICMP, ICMPV6
from ulogpy.packet.ipv4 import ETH_P_IP, IPV4, decode_ipv4
from ulogpy.packet.ipv6 import ETH_P_IPV6, FRAGMENT, IPV6, WALK_KEYS, decode_ipv6
from ulogpy.packet.transport import AHESP_KEYS, SCTP, TCP, UDP

__all__ = ["KEYS", "OK", "TRUNCATED", "UNKNOWN", "decode_packet"]

AF_INET, AF_INET6, AF_BRIDGE = 2, 10, 7

HEADERS = (IPV4, IPV6, FRAGMENT, TCP, UDP, SCTP, ICMP, ICMPV6, ARP)


def _all_keys() -> dict[str, Key]:
    found = header_keys(HEADERS)
    for key in (*WALK_KEYS, *AHESP_KEYS, Key("oob.protocol", U16)):
        if found.setdefault(key.name, key) != key:
            raise ValueError(f"key {key.name} declared with two types")
    return found


#: Every key the decoders (and BASE) can set, by name.
KEYS: dict[str, Key] = _all_keys()

_BRIDGE = {ETH_P_IP: decode_ipv4, ETH_P_IPV6: decode_ipv6, ETH_P_ARP: decode_arp}.get


def decode_packet(buf, n: int, family: int, protocol: int, out: dict) -> int:
    """Decode ``buf[:n]`` into `out`; returns OK, TRUNCATED or UNKNOWN.

    `n` is clamped to the buffer, so a claimed length beyond it is harmless.
    """
    if n > len(buf):
        n = len(buf)
    if family == AF_INET:
        return decode_ipv4(buf, n, out)
    if family == AF_INET6:
        return decode_ipv6(buf, n, out)
    if family == AF_BRIDGE:
        decode = _BRIDGE(protocol)
        if decode is not None:
            return decode(buf, n, out)
    return UNKNOWN
