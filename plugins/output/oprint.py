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

from ulogpy.core.keys import KeyType
from ulogpy.core.plugin import DataType, Option
from ulogpy.delivery.options import queue_options
from ulogpy.render.keytext import Render, renderers
from ulogpy.transports.file import FileOutput

BOUNDARY = "===>PACKET BOUNDARY\n"


def _ipaddr(value: object) -> str:
    """ulogd: the key's first u32 as x86 reads it, most significant byte first."""
    return socket.inet_ntoa(value[3::-1])  # type: ignore[index]


def _const(text: str) -> Render:
    return lambda _value: text


NONE = _const("<none>")
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
        *queue_options(),
    )

    def configure(self) -> None:
        cfg = self.config
        super().configure()
        # untyped keys print `<none>`, any type without a format `default`, as in ulogd
        text = {**renderers(_ipaddr, bool(cfg.ipv6_text)), KeyType.NONE: NONE}
        self.fields = tuple(
            (key.name, key.name + "=", text.get(key.type, DEFAULT))
            for key in self.stack_keys
        )

    def render(self, record: dict) -> str:
        parts = [BOUNDARY]
        append = parts.append
        get = record.get
        for name, prefix, render in self.fields:
            value = get(name)
            if value is not None:
                append(prefix + render(value) + "\n")
        return "".join(parts)
