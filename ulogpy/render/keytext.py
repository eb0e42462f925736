"""Key values as text, the way ulogd's generic printers (GPRINT, OPRINT) write them.

Both print strings as they are, booleans as 0/1 and integers in decimal; they
differ only in how an address key looks, so each passes its own IPv4 rendering.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from ulogpy.core.keys import KeyType

Render = Callable[[object], str]


def _bool(value: object) -> str:
    return "1" if value else "0"


def _as_is(value: object) -> str:
    return value  # type: ignore[return-value]


def renderers(ipaddr: Render, ipv6_text: bool) -> dict[KeyType, Render]:
    """Renderers by key type; `ipaddr` is the printer's own address text, replaced for
    16-byte addresses by the full IPv6 text when the ulogpy option `ipv6_text` is on."""
    address = ipaddr
    if ipv6_text:
        def address(value: object) -> str:
            if len(value) == 16:  # type: ignore[arg-type]
                return socket.inet_ntop(socket.AF_INET6, value)  # type: ignore[arg-type]
            return ipaddr(value)

    return {
        KeyType.STRING: _as_is,
        KeyType.BOOL: _bool,
        KeyType.INT8: str, KeyType.INT16: str, KeyType.INT32: str,
        KeyType.UINT8: str, KeyType.UINT16: str, KeyType.UINT32: str, KeyType.UINT64: str,
        KeyType.IPADDR: address,
    }
