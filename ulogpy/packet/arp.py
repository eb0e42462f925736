"""ARP (Ethernet/IPv4 layout, 28 bytes), decoded for bridge-family packets only.

ulogd reads the fixed `struct ether_arp` whatever the header's own hardware
and protocol lengths say.  Where ulogd stores *pointers* into the packet in
the address keys `arp.saddr`/`arp.daddr` (spec 8.3 B5, so IP2STR prints
garbage), ulogpy stores the four address bytes in network order like every
other address key, so IP2STR and PRINTPKT render the real addresses.
"""

from __future__ import annotations

from ulogpy.core.keys import IPADDR, RAW, U16
from ulogpy.packet.fields import Field, Header

ETH_P_ARP = 0x0806

ARP = Header("arp", (
    Field("arp.hwtype", 0, "H", U16),
    Field("arp.protocoltype", 2, "H", U16),
    Field("arp.operation", 6, "H", U16),
    Field("arp.shwaddr", 8, "6s", RAW),
    Field("arp.saddr", 14, "4s", IPADDR),
    Field("arp.dhwaddr", 18, "6s", RAW),
    Field("arp.daddr", 24, "4s", IPADDR),
))

_arp = ARP.compile_layer()


def decode_arp(buf, n: int, out: dict) -> int:
    """The ARP packet in ``buf[:n]``."""
    return _arp(buf, 0, n, out)
