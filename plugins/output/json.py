"""JSON: one JSON object per event, field for field as ulogd writes it (spec 5.4).

Field order: `@version` (eventv1), the timestamp, `dvc`, then every key of
the stack in stack order, once, under its CIM name where it has one
(`src_ip`, `dest_port`, ...).  Binary addresses and raw data are left out,
as ulogd leaves them out.

`mode` picks where records go: a file (`ulogpy.filesink`), or a tcp, udp or
unix stream socket (`ulogpy.socketsink`).  The bytes are the same either
way.  File mode writes from a thread of its own behind the output queue
(`ulogpy.outqueue`).  Socket modes need none: unlike ulogd, a slow or absent
peer never blocks the daemon and does not fail start-up (records wait in
memory, up to `queue_size`, the oldest dropped beyond that, and the
connection is retried).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time

from ulogpy.fileoutput import FileOutput
from ulogpy.jsontext import json_string, key_prefix
from ulogpy.keys import KeyType
from ulogpy.outqueue import QUEUE_OPTIONS
from ulogpy.ownlog import NOTICE
from ulogpy.plugin import DataType, Option, PluginError
from ulogpy.socketsink import Endpoint, SocketSink, check_unix_path

log = logging.getLogger("ulogpy.json")
_SKIPPED = {KeyType.IPADDR, KeyType.RAW, KeyType.RAWSTR, KeyType.INT64, KeyType.NONE}
_MODES = ("file", "tcp", "udp", "unix")


def _check_mode(value: str) -> str | None:
    return None if value.lower() in _MODES else f"unknown mode '{value}'"


def _label(value: int) -> str:
    """`boolean_label`: ulogd's NFLOG label 0 means the packet was blocked."""
    return '"allowed"' if value else '"blocked"'


def local_timestamp(sec: int, usec: int | None) -> str:
    """ulogd's JSON time: local time, `.usec` if known, `+HHMM` unless the offset is 0."""
    lt = time.localtime(sec)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", lt)
    if usec is not None:
        text += f".{usec:06d}"
    off = lt.tm_gmtoff
    if off:
        sign = "+" if off > 0 else "-"
        off = abs(off) // 60
        text += f"{sign}{off // 60:02d}{off % 60:02d}"
    return text


class JSON(FileOutput):
    name = "JSON"
    description = "JSON lines (Logstash, Splunk, Elasticsearch)"
    input_type = DataType.PACKET | DataType.FLOW | DataType.SUM
    section_required = True
    wildcard_input = True
    open_error = "can't open JSON log file"
    reopen_notice = "JSON: reopening logfile"
    options = (
        Option("file", str, "/var/log/ulogd.json",
               help="path of the JSON file (mode unix: of the socket to connect to)"),
        Option("sync", int, 0, help="1: every batch reaches the file at once"),
        Option("timestamp", int, 1, help="1: add a timestamp field"),
        Option("eventv1", int, 0, help="1: Logstash event v1 (@version, @timestamp)"),
        Option("device", str, "Netfilter", help="value of the dvc field"),
        Option("boolean_label", int, 0, help="1: raw.label becomes action allowed/blocked"),
        Option("mode", str, "file", help="file, tcp, udp or unix (case-insensitive)",
               check=_check_mode),
        Option("host", str, "127.0.0.1", help="host name or address for tcp/udp modes"),
        Option("port", str, "12345", help="port number or service name for tcp/udp modes"),
        *QUEUE_OPTIONS,
    )

    def configure(self) -> None:
        cfg = self.config
        self.mode = cfg.mode.lower()
        self.socket: SocketSink | None = None
        if self.mode == "file":
            self.out = self.open_sink().write_line
        else:
            if cfg.queue_policy != "drop-oldest":
                raise PluginError(f"option 'queue_policy': mode {self.mode} never blocks the "
                                  "daemon and keeps its queue in memory, so only drop-oldest "
                                  "applies (block and spool are for mode file)")
            self.queued = False  # the socket is non-blocking: no writer thread needed
            self.socket = SocketSink(_endpoint(self.mode, cfg), cfg.queue_size, self.counters,
                                     str(self))
            send = self.socket.send
            self.out = lambda line: send(line.encode("utf-8", "surrogateescape"))
        names = {k.name for k in self.stack_keys}
        self.time_bound = "oob.time.sec" in names
        self.usec_bound = "oob.time.usec" in names
        head = []
        if cfg.eventv1:
            head.append('"@version": 1')
        self.ts_prefix = key_prefix("@timestamp" if cfg.eventv1 else "timestamp") if cfg.timestamp \
            else None
        self.head = head
        self.dvc = key_prefix("dvc") + json_string(cfg.device)
        # (prefix, render, first key name, later key names sharing that JSON name): a name
        # seen twice keeps its first position and takes the value of the last valid key.
        fields: dict[str, tuple[str, object, list[str]]] = {}
        for key in self.stack_keys:
            if key.type in _SKIPPED:
                continue
            if key.name == "raw.label" and cfg.boolean_label:
                jname, render = "action", _label
            else:
                jname = key.cim_name or key.name
                render = json_string if key.type is KeyType.STRING else str
            if jname in fields:
                if key.name not in fields[jname][2]:
                    fields[jname][2].append(key.name)
            else:
                fields[jname] = (key_prefix(jname), render, [key.name])
        self.fields = tuple(
            (prefix, render, names[0], tuple(names[1:]))
            for prefix, render, names in fields.values()
        )
        self._stamp_sec = -1
        self._stamp = ""

    def start(self, loop) -> None:
        if self.socket is not None:
            self.socket.start(loop)
        else:
            super().start(loop)

    def write(self, record: dict) -> None:
        parts = list(self.head)
        get = record.get
        if self.ts_prefix is not None:
            parts.append(self.ts_prefix + self._timestamp(get))
        parts.append(self.dvc)
        append = parts.append
        for prefix, render, name, others in self.fields:
            value = get(name)
            for other in others:
                v = get(other)
                if v is not None:
                    value = v
            if value is not None:
                append(prefix + render(value))
        self.out("{" + ", ".join(parts) + "}\n")

    def _timestamp(self, get) -> str:
        """The quoted time: the packet's if the stack gives one, else now (cached per second)."""
        sec = get("oob.time.sec") if self.time_bound else None
        if sec is None:
            sec = int(time.time())
        elif self.usec_bound and (usec := get("oob.time.usec")) is not None:
            return '"' + local_timestamp(sec, usec) + '"'
        if sec != self._stamp_sec:
            self._stamp_sec = sec
            self._stamp = '"' + local_timestamp(sec, None) + '"'
        return self._stamp

    def flush(self, force: bool = False) -> None:
        if self.socket is not None:
            self.socket.flush()
        else:
            super().flush(force)

    def signal(self, signum: int) -> None:
        if self.socket is None:
            super().signal(signum)
        elif signum == signal.SIGHUP:
            log.log(NOTICE, "JSON: reopening socket")
            self.socket.reconnect()

    def stop(self) -> None:
        if self.socket is not None:
            self.socket.close()
        else:
            super().stop()


def _endpoint(mode: str, cfg) -> Endpoint:
    """The peer of a socket mode, or PluginError naming the option that cannot work."""
    if mode == "unix":
        path = os.path.abspath(cfg.file) if cfg.file else ""
        problem = check_unix_path(path)
        if problem:
            raise PluginError(f"option 'file': {problem} (mode unix connects to the socket "
                              "file it names)")
        return Endpoint(mode, path=path)
    if not cfg.host:
        raise PluginError(f"option 'host': empty (mode {mode} needs a host name or address)")
    port = cfg.port.strip()
    if not port.isdigit():
        try:
            socket.getservbyname(port, mode)
        except OSError:
            raise PluginError(f"option 'port': unknown {mode} service '{cfg.port}' (a port "
                              "number 1-65535 or a name from /etc/services)") from None
    elif not 0 < int(port) < 65536:
        raise PluginError(f"option 'port': {cfg.port} is not a port number (1-65535)")
    return Endpoint(mode, host=cfg.host, port=port)
