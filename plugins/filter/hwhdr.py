"""HWHDR: the link-layer header as text (`mac.str`, `mac.saddr.str`, `mac.daddr.str`).

Follows ulogd 2.0.8 (spec 4.7) step by step, including which outputs it sets when:
`oob.protocol` is copied when present and replaced by the ethertype for Ethernet;
`raw.type` is set only when there is a hardware address or header.  Both names are
also outputs of NFLOG: a record is one dict, so these overwrite NFLOG's values, which
is what ulogd's downstream plugins see too (they bind to the nearest provider).

A header or address longer than 42 bytes does not fit ulogd's text buffer: ulogd
returns ERR, ulogpy stops the event for this stack the same way (counted).
"""

from __future__ import annotations

from typing import Any

from ulogpy.core.keys import RAW, STRING, U16, keys
from ulogpy.core.plugin import DataType, FilterPlugin, counters

ARPHRD_ETHER, ARPHRD_VOID = 1, 0xFFFF
ETH_ALEN, ETH_HLEN = 6, 14
#: ulogd formats into 128-byte buffers: 3 characters per byte plus the NUL must fit.
MAX_TEXT_BYTES = (128 - 1) // 3
#: Headers remembered at most (then forgotten all at once, as IP2STR's texts).
MAX_MEMO = 4096


class HWHDR(FilterPlugin):
    name = "HWHDR"
    description = "Format the hardware header and addresses as text"
    counter_table = counters(
        ("no_addrlen", False, "packets without a hardware address length"),
        ("no_mac_len", False, "packets without a MAC header length"),
        ("short_header", False, "MAC headers shorter than their type needs"),
        ("too_long", False, "MAC headers too long to print"),
    )
    input_type = DataType.PACKET
    output_type = DataType.PACKET
    input_keys = keys(
        ("raw.type", U16, True), ("oob.protocol", U16), ("raw.mac", RAW, True),
        ("raw.mac_len", U16, True), ("raw.mac.saddr", RAW, True),
        ("raw.mac.addrlen", U16, True),
    )
    output_keys = keys(
        ("raw.type", U16), ("oob.protocol", U16), ("mac.saddr.str", STRING),
        ("mac.daddr.str", STRING), ("mac.str", STRING),
    )

    def __init__(self, instance_id: str, config: Any) -> None:
        super().__init__(instance_id, config)
        #: (raw.type, raw.mac.saddr, raw.mac.addrlen, raw.mac, raw.mac_len) -> the keys
        #: they give, in the order `_texts` sets them.  Why: a link shows the same few
        #: headers again and again, and three `hex(":")` texts cost a few microseconds a
        #: packet.  Only results that set keys and count nothing are kept.
        self.memo: dict[tuple, dict] = {}

    def interp(self, record: dict) -> bool | None:
        get = record.get
        # Read every input before writing: raw.type and oob.protocol are also outputs.
        inputs = (get("raw.type"), get("raw.mac.saddr"), get("raw.mac.addrlen"),
                  get("raw.mac"), get("raw.mac_len"))
        try:
            done = self.memo.get(inputs)
            hashable = True
        except TypeError:  # a bytearray or memoryview: not remembered
            done, hashable = None, False
        if done is not None:
            record.update(done)
            return None
        changed: dict = {}
        status, clean = self._texts(changed, *inputs)
        if status is None and not changed:
            # neither address nor header: ulogd leaves its raw.type unset here
            # (consumers bind to it, not to NFLOG's)
            record.pop("raw.type", None)
            return None
        record.update(changed)
        if clean and hashable:
            if len(self.memo) >= MAX_MEMO:
                self.memo.clear()
            self.memo[inputs] = changed
        return status

    def _texts(self, out: dict, in_type, saddr, addrlen, mac, maclen
               ) -> tuple[bool | None, bool]:
        """ulogd's HWHDR on these inputs: the keys it sets go into `out`.  Returns
        (False to stop the event or None, whether nothing was counted)."""
        if saddr is not None:
            if addrlen is None:
                self.counters.add("no_addrlen")
                return False, False
            if addrlen > MAX_TEXT_BYTES:
                self.counters.add("too_long")
                return False, False
            out["mac.saddr.str"] = saddr[:addrlen].hex(":")
            out["raw.type"] = ARPHRD_VOID
        if mac is None:
            return None, True
        if maclen is None:
            self.counters.add("no_mac_len")
            return False, False
        if in_type is None:
            in_type = ARPHRD_ETHER if maclen == ETH_HLEN else ARPHRD_VOID
        out["raw.type"] = in_type
        clean = True
        if in_type == ARPHRD_ETHER:
            if len(mac) >= ETH_HLEN:
                if saddr is None:
                    out["mac.saddr.str"] = mac[ETH_ALEN:2 * ETH_ALEN].hex(":")
                out["mac.daddr.str"] = mac[:ETH_ALEN].hex(":")
                out["oob.protocol"] = (mac[12] << 8) | mac[13]
            else:
                self.counters.add("short_header")
                clean = False
        if maclen > MAX_TEXT_BYTES:
            self.counters.add("too_long")
            return False, False
        out["mac.str"] = mac[:maclen].hex(":")
        return None, clean
