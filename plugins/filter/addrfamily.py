"""Which address family an event's addresses are in (IP2STR, IP2BIN, IP2HBIN).

The key types do not carry the family: the converters decide from `oob.family`
(2 IPv4, 10 IPv6) and, for bridged packets (7), from the ethertype in
`oob.protocol` (ARP addresses are IPv4).  Anything else stops the event for the
stack, as ulogd's ERR does; ulogd logs a NOTICE every time, ulogpy logs the first
one per instance and reason and counts them all (SIGUSR1 shows the counters).
"""

from __future__ import annotations

import logging
import socket

from ulogpy.daemon.ownlog import NOTICE

AF_INET, AF_INET6 = socket.AF_INET, socket.AF_INET6
NFPROTO_IPV4, NFPROTO_BRIDGE, NFPROTO_IPV6 = 2, 7, 10
ETH_P_IP, ETH_P_ARP, ETH_P_IPV6 = 0x0800, 0x0806, 0x86DD

#: Reasons (also the counter names) for which no family can be chosen.
UNKNOWN_FAMILY = "unknown_family"
NO_BRIDGE_PROTOCOL = "no_bridge_protocol"
UNKNOWN_BRIDGE_PROTOCOL = "unknown_bridge_protocol"

#: ulogd's NOTICE text for each reason (IP2STR and IP2BIN; IP2HBIN words one differently).
MESSAGES = {
    UNKNOWN_FAMILY: "Unknown protocol family",
    NO_BRIDGE_PROTOCOL: "No protocol inside AF_BRIDGE packet",
    UNKNOWN_BRIDGE_PROTOCOL: "Unknown protocol inside AF_BRIDGE packet",
}

_BY_FAMILY = {NFPROTO_IPV4: AF_INET, NFPROTO_IPV6: AF_INET6}
_BY_ETHERTYPE = {ETH_P_IP: AF_INET, ETH_P_ARP: AF_INET, ETH_P_IPV6: AF_INET6}

log = logging.getLogger("ulogpy.addrfamily")


def address_family(record: dict) -> int | str:
    """`AF_INET` or `AF_INET6` for the record's addresses, else the reason (a str)."""
    family = record.get("oob.family")
    af = _BY_FAMILY.get(family)
    if af is not None:
        return af
    if family == NFPROTO_BRIDGE:
        proto = record.get("oob.protocol")
        if proto is None:
            return NO_BRIDGE_PROTOCOL
        return _BY_ETHERTYPE.get(proto, UNKNOWN_BRIDGE_PROTOCOL)
    return UNKNOWN_FAMILY


def refuse(plugin, reason: str, messages: dict[str, str] = MESSAGES) -> bool:
    """Count `reason` on `plugin`, log ulogd's NOTICE the first time; False stops the event."""
    counters = plugin.counters
    counters.add(reason)
    if counters.get(reason) == 1:
        log.log(NOTICE, "%s: %s (logged once, then counted as %s)",
                plugin, messages[reason], reason)
    return False
