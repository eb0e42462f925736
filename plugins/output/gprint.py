"""GPRINT: one `name=value,name=value` line per event (spec 4.16, 5.5).

Every key of the stack in stack order, by key name (not CIM name), each
time a plugin gives it (a name given twice is printed twice, as ulogd does);
absent keys and keys ulogd cannot print (raw data, IP2BIN's rawstr, int64,
none) are left out.  An optional `timestamp=YYYY/MM/DD-HH:MM:SS` of the
current local time comes first.  An event with nothing to print is an empty
line, as in ulogd.

Addresses print as ulogd prints them: the first four bytes of the value in
memory order.  That is the dotted quad for IPv4 (and IP2HBIN's host-order
values come out reversed), but only the first four bytes of an IPv6 address
(`::1` becomes `0.0.0.0`).  The IPv6 rendering is kept by default so that
GPRINT files stay byte-identical to ulogd's (the same lines carry the real
address when IP2STR is in the stack, as in every IPv6-aware setup); the
ulogpy option `ipv6_text=1` prints IPv6 addresses in full instead
(`2001:db8::1`: no comma in it, so lines still split the same way).
"""

from __future__ import annotations

import socket
import time

from ulogpy.core.plugin import DataType, Option
from ulogpy.delivery.options import queue_options
from ulogpy.render.keytext import renderers
from ulogpy.transports.file import FileOutput


def _ipaddr(value: object) -> str:
    """ulogd: the key's first 4 bytes in memory order, whatever the family."""
    return socket.inet_ntoa(value[:4])  # type: ignore[index]


class GPRINT(FileOutput):
    name = "GPRINT"
    description = "Generic key=value lines in a file"
    input_type = DataType.PACKET | DataType.FLOW | DataType.SUM
    section_required = True
    wildcard_input = True
    open_error = "can't open GPRINT log file"
    reopen_notice = "GPRINT: reopening logfile"
    options = (
        Option("file", str, "/var/log/ulogd_gprint.log", help="path of the log file"),
        Option("sync", int, 0, help="1: every batch reaches the file at once"),
        Option("timestamp", int, 0, help="1: start each line with the current local time"),
        Option("ipv6_text", int, 0, ulogd=False,
               help="1: IPv6 addresses in full (ulogd prints their first 4 bytes)"),
        *queue_options(),
    )

    def configure(self) -> None:
        cfg = self.config
        super().configure()
        # a type missing from the renderers is not printed at all (ulogd skips it)
        text = renderers(_ipaddr, bool(cfg.ipv6_text))
        self.fields = tuple(
            (key.name, key.name + "=", text[key.type])
            for key in self.stack_keys if key.type in text
        )
        self.timestamp = bool(cfg.timestamp)
        self._stamp_sec = -1
        self._stamp = ""

    def render(self, record: dict) -> str:
        parts = [self._now()] if self.timestamp else []
        append = parts.append
        get = record.get
        for name, prefix, render in self.fields:
            value = get(name)
            if value is not None:
                append(prefix + render(value))
        return ",".join(parts) + "\n"

    def _now(self) -> str:
        """`timestamp=` with the current local time, rendered once per second."""
        sec = int(time.time())
        if sec != self._stamp_sec:
            self._stamp_sec = sec
            self._stamp = time.strftime("timestamp=%Y/%m/%d-%H:%M:%S", time.localtime(sec))
        return self._stamp
