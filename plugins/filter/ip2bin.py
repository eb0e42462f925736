"""IP2BIN: addresses as `0x` + 32 hex digits, for SQL columns that take them unquoted.

IPv4 addresses are written as IPv4-mapped IPv6 (`::ffff:a.b.c.d`).  Kept from ulogd
2.0.8 (spec 8.3 B6): `reply.ip.daddr` is neither converted nor even looked at (an
off-by-one in its key loop), so `reply.ip.daddr.bin` is declared but never set.
"""

from __future__ import annotations

from ulogpy.plugins.filter.addrfamily import AF_INET, address_family, refuse

from ulogpy.core.keys import IPADDR, U8, U16, KeyType, keys
from ulogpy.core.plugin import DataType, FilterPlugin, counters

ADDRESS_KEYS = (
    "ip.saddr", "ip.daddr", "orig.ip.saddr", "orig.ip.daddr", "reply.ip.saddr", "reply.ip.daddr",
)
#: The keys ulogd actually converts: all but the last one.
_PAIRS = tuple((name, name + ".bin") for name in ADDRESS_KEYS[:-1])
_V4_MAPPED = "0x" + "00" * 10 + "ffff"


class IP2BIN(FilterPlugin):
    name = "IP2BIN"
    description = "Convert IP addresses to 0x-prefixed hex (IPv4 mapped into IPv6)"
    counter_table = counters(
        ("bad_address", False, "addresses of an unknown family"),
    )
    input_type = DataType.PACKET | DataType.FLOW
    output_type = DataType.PACKET | DataType.FLOW
    input_keys = keys(
        ("oob.family", U8), ("oob.protocol", U16),
        *((name, IPADDR, True) for name in ADDRESS_KEYS),
    )
    output_keys = keys(*((name + ".bin", KeyType.RAWSTR) for name in ADDRESS_KEYS))

    def interp(self, record: dict) -> bool | None:
        af = address_family(record)
        get = record.get
        if af.__class__ is str:  # no family: an error only if there is an address to convert
            if any(get(name) is not None for name, _ in _PAIRS):
                return refuse(self, af)
            return None
        size = 4 if af == AF_INET else 16
        prefix = _V4_MAPPED if af == AF_INET else "0x"
        for name, out in _PAIRS:
            value = get(name)
            if value is not None:
                if len(value) == size:
                    record[out] = prefix + value.hex()
                else:
                    self.counters.add("bad_address")
        return None
