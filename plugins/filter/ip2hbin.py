"""IP2HBIN: addresses as host-order integers, for consumers that compare numbers.

ulogd stores an IPv4 address as the host-order (little-endian here) integer in the
key's 32-bit slot; ulogpy's IP values are the bytes of that slot, so the result is the
address bytes reversed, and GPRINT/OPRINT show them reversed exactly as ulogd's do.

Decided (spec 8.3 B6): for IPv6, ulogd 2.0.8 stores a pointer (garbage to any reader);
ulogpy gives the 16 address bytes unchanged, as later ulogd versions do.  Kept: the
family is checked even when there is no address, and `reply.ip.daddr` is never
converted (off-by-one), so `reply.ip.hdaddr` is declared but never set.
"""

from __future__ import annotations

from ulogpy.plugins.filter.addrfamily import (
    AF_INET,
    MESSAGES,
    UNKNOWN_FAMILY,
    address_family,
    refuse,
)

from ulogpy.core.keys import IPADDR, U8, U16, keys
from ulogpy.core.plugin import DataType, FilterPlugin, counters

ADDRESS_KEYS = (
    "ip.saddr", "ip.daddr", "orig.ip.saddr", "orig.ip.daddr", "reply.ip.saddr", "reply.ip.daddr",
)
OUTPUT_NAMES = (
    "ip.hsaddr", "ip.hdaddr", "orig.ip.hsaddr", "orig.ip.hdaddr", "reply.ip.hsaddr",
    "reply.ip.hdaddr",
)
#: The pairs ulogd actually converts: all but the last one.
_PAIRS = tuple(zip(ADDRESS_KEYS[:-1], OUTPUT_NAMES[:-1], strict=True))
_MESSAGES = {**MESSAGES, UNKNOWN_FAMILY: "Unknown protocol inside packet"}


class IP2HBIN(FilterPlugin):
    name = "IP2HBIN"
    description = "Convert IPv4 addresses to host-order integers"
    counter_table = counters(
        ("bad_address", False, "addresses of an unknown family"),
    )
    input_type = DataType.PACKET | DataType.FLOW
    output_type = DataType.PACKET | DataType.FLOW
    input_keys = keys(
        ("oob.family", U8), ("oob.protocol", U16),
        *((name, IPADDR, True) for name in ADDRESS_KEYS),
    )
    output_keys = keys(*((name, IPADDR) for name in OUTPUT_NAMES))

    def interp(self, record: dict) -> bool | None:
        af = address_family(record)
        if af.__class__ is str:
            return refuse(self, af, _MESSAGES)
        get = record.get
        if af == AF_INET:
            for name, out in _PAIRS:
                value = get(name)
                if value is not None:
                    if len(value) == 4:
                        record[out] = value[::-1]
                    else:
                        self.counters.add("bad_address")
        else:
            for name, out in _PAIRS:
                value = get(name)
                if value is not None:
                    if len(value) == 16:
                        record[out] = value
                    else:
                        self.counters.add("bad_address")
        return None
