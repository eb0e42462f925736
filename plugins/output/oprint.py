"""OPRINT: a debug dump, `===>PACKET BOUNDARY` then one `name=value` line per key (spec 4.17, 5.5).

Every present key of the stack in stack order, by key name, once per plugin
that gives it (as ulogd prints them).  Values as ulogd 2.0.8 prints them:
integers in decimal, raw data and anything ulogd has no format for
(IP2BIN's rawstr, int64) as the word `default`, untyped keys as `<none>`.

Addresses: ulogd prints the key's first 32 bits as x86 reads them, most
significant byte first, so `192.168.1.10` appears as `10.1.168.192` and an
IPv6 address as its first four bytes reversed (`2001:db8::1` as
`184.13.1.32`).  Kept by default, so dumps stay byte-identical to ulogd's;
the ulogpy option `ipv6_text=1` prints IPv6 addresses in full instead.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from ulogpy.fileoutput import FileOutput
from ulogpy.keys import KeyType
from ulogpy.outqueue import QUEUE_OPTIONS
from ulogpy.plugin import DataType, Option

Render = Callable[[object], str]
BOUNDARY = "===>PACKET BOUNDARY\n"


def _bool(value: object) -> str:
    return "1" if value else "0"


def _ipaddr(value: object) -> str:
    """ulogd: the key's first u32 as x86 reads it, most significant byte first."""
    return socket.inet_ntoa(value[3::-1])  # type: ignore[index]


def _ipaddr_text(value: object) -> str:
    """`ipv6_text=1`: IPv4 as ulogd prints it, IPv6 in full."""
    if len(value) == 16:  # type: ignore[arg-type]
        return socket.inet_ntop(socket.AF_INET6, value)  # type: ignore[arg-type]
    return socket.inet_ntoa(value[3::-1])  # type: ignore[index]


def _identity(value: object) -> str:
    return value  # type: ignore[return-value]


def _const(text: str) -> Render:
    return lambda _value: text


#: How each key type prints; any other type prints `default`, as in ulogd.
RENDERERS: dict[KeyType, Render] = {
    KeyType.STRING: _identity,
    KeyType.BOOL: _bool,
    KeyType.INT8: str, KeyType.INT16: str, KeyType.INT32: str,
    KeyType.UINT8: str, KeyType.UINT16: str, KeyType.UINT32: str, KeyType.UINT64: str,
    KeyType.IPADDR: _ipaddr,
    KeyType.NONE: _const("<none>"),
}
DEFAULT = _const("default")


class OPRINT(FileOutput):
    name = "OPRINT"
    description = "Debug dump of every key, one per line"
    input_type = DataType.PACKET | DataType.FLOW
    section_required = True
    wildcard_input = True
    open_error = "can't open PKTLOG"
    reopen_notice = "OPRINT: reopening logfile"
    options = (
        Option("file", str, "/var/log/ulogd_oprint.log", help="path of the dump file"),
        Option("sync", int, 0, help="1: every batch reaches the file at once"),
        Option("ipv6_text", int, 0, ulogd=False,
               help="1: IPv6 addresses in full (ulogd prints their first 4 bytes, reversed)"),
        *QUEUE_OPTIONS,
    )

    def configure(self) -> None:
        cfg = self.config
        self.open_sink()
        renderers = dict(RENDERERS)
        if cfg.ipv6_text:
            renderers[KeyType.IPADDR] = _ipaddr_text
        self.fields = tuple(
            (key.name, key.name + "=", renderers.get(key.type, DEFAULT))
            for key in self.stack_keys
        )

    def write(self, record: dict) -> None:
        parts = [BOUNDARY]
        append = parts.append
        get = record.get
        for name, prefix, render in self.fields:
            value = get(name)
            if value is not None:
                append(prefix + render(value) + "\n")
        self.sink.write_line("".join(parts))
