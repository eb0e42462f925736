"""LOGEMU: syslog-like text lines (`Mmm dd HH:MM:SS host <print>`) in a file."""

from __future__ import annotations

import socket
import time

from ulogpy.core.keys import STRING, U32, keys
from ulogpy.core.plugin import DataType, Option
from ulogpy.delivery.options import queue_options
from ulogpy.transports.file import FileOutput


class LOGEMU(FileOutput):
    name = "LOGEMU"
    description = "Syslog-emulation text file"
    input_type = DataType.PACKET | DataType.FLOW
    section_required = True
    open_error = "can't open syslogemu"
    options = (
        Option("file", str, "/var/log/ulogd_syslogemu.log", help="path of the log file"),
        Option("sync", int, 0, help="1: every batch reaches the file at once"),
        *queue_options(),
    )
    input_keys = keys(("print", STRING), ("oob.time.sec", U32, True))

    def configure(self) -> None:
        super().configure()
        self.host = socket.gethostname().split(".", 1)[0]
        self._stamp_sec = -1
        self._stamp = ""

    def render(self, record: dict) -> str:
        sec = record.get("oob.time.sec")
        if sec is None:
            sec = int(time.time())
        if sec != self._stamp_sec:
            self._stamp_sec = sec
            self._stamp = time.strftime("%b %e %H:%M:%S ", time.localtime(sec)) + self.host + " "
        return self._stamp + record["print"]
