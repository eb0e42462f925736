"""IP2STR: binary addresses to text (`inet_ntop`), for printers and JSON."""

from __future__ import annotations

import socket

from ulogpy.keys import IPADDR, STRING, U8, U16, keys
from ulogpy.plugin import DataType, FilterPlugin

_ADDRESS_KEYS = (
    "ip.saddr", "ip.daddr", "orig.ip.saddr", "orig.ip.daddr",
    "reply.ip.saddr", "reply.ip.daddr", "arp.saddr", "arp.daddr",
)
_CIM = {"ip.saddr": "src_ip", "orig.ip.saddr": "src_ip",
        "ip.daddr": "dest_ip", "orig.ip.daddr": "dest_ip"}
_PAIRS = tuple((name, name + ".str") for name in _ADDRESS_KEYS)
_ETH_IPV6, _ETH_IPV4, _ETH_ARP = 0x86DD, 0x0800, 0x0806


class IP2STR(FilterPlugin):
    name = "IP2STR"
    description = "Convert IP addresses to strings"
    input_type = DataType.PACKET | DataType.FLOW
    output_type = DataType.PACKET | DataType.FLOW
    input_keys = keys(
        ("oob.family", U8), ("oob.protocol", U16),
        *((name, IPADDR, True) for name in _ADDRESS_KEYS),
    )
    output_keys = keys(*((name + ".str", STRING, False, _CIM.get(name)) for name in _ADDRESS_KEYS))

    def interp(self, record: dict) -> bool | None:
        family = record.get("oob.family")
        if family == 2:
            af = socket.AF_INET
        elif family == 10:
            af = socket.AF_INET6
        elif family == 7:
            proto = record.get("oob.protocol")
            if proto == _ETH_IPV6:
                af = socket.AF_INET6
            elif proto in (_ETH_IPV4, _ETH_ARP):
                af = socket.AF_INET
            else:
                self.counters.add("unknown_bridge_protocol")
                return False
        else:
            if any(name in record for name in _ADDRESS_KEYS):
                self.counters.add("unknown_family")
                return False
            return None
        ntop = socket.inet_ntop
        get = record.get
        for name, out in _PAIRS:
            value = get(name)
            if value is not None:
                try:
                    record[out] = ntop(af, value)
                except (ValueError, OSError):
                    self.counters.add("bad_address")
        return None
