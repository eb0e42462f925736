"""IP2STR: binary addresses to text (`inet_ntop`), for printers and JSON."""

from __future__ import annotations

import socket

from ulogpy.addrfamily import address_family, refuse
from ulogpy.keys import IPADDR, STRING, U8, U16, keys
from ulogpy.plugin import DataType, FilterPlugin

_ADDRESS_KEYS = (
    "ip.saddr", "ip.daddr", "orig.ip.saddr", "orig.ip.daddr",
    "reply.ip.saddr", "reply.ip.daddr", "arp.saddr", "arp.daddr",
)
_CIM = {"ip.saddr": "src_ip", "orig.ip.saddr": "src_ip",
        "ip.daddr": "dest_ip", "orig.ip.daddr": "dest_ip"}
_PAIRS = tuple((name, name + ".str") for name in _ADDRESS_KEYS)


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
        af = address_family(record)
        get = record.get
        if af.__class__ is str:  # no family: an error only if there is an address to convert
            if any(get(name) is not None for name in _ADDRESS_KEYS):
                return refuse(self, af)
            return None
        ntop = socket.inet_ntop
        for name, out in _PAIRS:
            value = get(name)
            if value is not None:
                try:
                    record[out] = ntop(af, value)
                except (ValueError, OSError):
                    self.counters.add("bad_address")
        return None
