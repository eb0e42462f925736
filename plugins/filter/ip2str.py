"""IP2STR: binary addresses to text (`inet_ntop`), for printers and JSON."""

from __future__ import annotations

import socket

from ulogpy.plugins.filter.addrfamily import NFPROTO_IPV4, NFPROTO_IPV6, address_family, refuse

from ulogpy import fastpath
from ulogpy.core.keys import IPADDR, STRING, U8, U16, keys
from ulogpy.core.plugin import DataType, FilterPlugin, counters

_ADDRESS_KEYS = (
    "ip.saddr", "ip.daddr", "orig.ip.saddr", "orig.ip.daddr",
    "reply.ip.saddr", "reply.ip.daddr", "arp.saddr", "arp.daddr",
)
_CIM = {"ip.saddr": "src_ip", "orig.ip.saddr": "src_ip",
        "ip.daddr": "dest_ip", "orig.ip.daddr": "dest_ip"}
_PAIRS = tuple((name, name + ".str") for name in _ADDRESS_KEYS)
_BY_FAMILY = {NFPROTO_IPV4: socket.AF_INET, NFPROTO_IPV6: socket.AF_INET6}
#: Address bytes -> text, per address family.  Why: `inet_ntop` is a formatted print
#: in C behind an argument parser, several times a dict look-up, and the same few
#: addresses come back again and again (hosts, gateways, one side of most flows).
_TEXTS: dict[int, dict[bytes, str]] = {socket.AF_INET: {}, socket.AF_INET6: {}}
#: Addresses remembered per family before the memo starts afresh.
MAX_TEXTS = 4096


class IP2STR(FilterPlugin):
    name = "IP2STR"
    description = "Convert IP addresses to strings"
    counter_table = counters(
        ("bad_address", False, "addresses of an unknown family"),
    )
    input_type = DataType.PACKET | DataType.FLOW
    output_type = DataType.PACKET | DataType.FLOW
    input_keys = keys(
        ("oob.family", U8), ("oob.protocol", U16),
        *((name, IPADDR, True) for name in _ADDRESS_KEYS),
    )
    output_keys = keys(*((name + ".str", STRING, False, _CIM.get(name)) for name in _ADDRESS_KEYS))

    def configure(self) -> None:
        # The compiled twin of `interp` from the same tables, where it is built: it
        # converts what it can and hands the rest (families it is not given, addresses
        # of another type or size) to `interp` itself, so the counting and the
        # messages stay in one place.
        compiled = fastpath.compiled
        if compiled is not None:
            self.interp = compiled.AddressText(_PAIRS, _BY_FAMILY, _TEXTS, MAX_TEXTS,
                                                  self.python_interp)

    def interp(self, record: dict) -> bool | None:
        af = _BY_FAMILY.get(record.get("oob.family"))
        if af is None:
            af = address_family(record)  # bridged packets, or no family at all
            if af.__class__ is str:  # no family: an error only if there is an address
                if any(record.get(name) is not None for name in _ADDRESS_KEYS):
                    return refuse(self, af)
                return None
        texts = _TEXTS[af]
        get = record.get
        for name, out in _PAIRS:
            value = get(name)
            if value is not None:
                try:
                    text = texts.get(value)
                except TypeError:  # an unhashable buffer: converted every time
                    text = None
                if text is None:
                    text = self._convert(af, value)
                    if text is None:
                        continue
                record[out] = text
        return None

    python_interp = interp  # (an instance's `interp` may be the compiled twin)

    def _convert(self, af: int, value: bytes) -> str | None:
        """`inet_ntop`, remembered in `_TEXTS`; None (counted) for a malformed address."""
        try:
            text = socket.inet_ntop(af, value)
        except (ValueError, OSError):
            self.counters.add("bad_address")
            return None
        texts = _TEXTS[af]
        if len(texts) >= MAX_TEXTS:
            texts.clear()
        texts[bytes(value)] = text
        return text
