"""JSON: one JSON object per event, field for field as ulogd writes it (spec 5.4).

Field order: `@version` (eventv1), the timestamp, `dvc`, then every key of
the stack in stack order, once, under its CIM name where it has one
(`src_ip`, `dest_port`, ...).  Binary addresses and raw data are left out,
as ulogd leaves them out.
"""

from __future__ import annotations

import signal
import time

from ulogpy.filesink import FileSink
from ulogpy.jsontext import json_string, key_prefix
from ulogpy.keys import KeyType
from ulogpy.plugin import DataType, Option, OutputPlugin, PluginError

_SKIPPED = {KeyType.IPADDR, KeyType.RAW, KeyType.RAWSTR, KeyType.INT64, KeyType.NONE}
_MODES = ("file",)


def _check_mode(value: str) -> str | None:
    if value.lower() in _MODES:
        return None
    if value.lower() in ("tcp", "udp", "unix"):
        return f"mode '{value}' is not supported by ulogpy yet"
    return f"unknown mode '{value}'"


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


class JSON(OutputPlugin):
    name = "JSON"
    description = "JSON lines (Logstash, Splunk, Elasticsearch)"
    input_type = DataType.PACKET | DataType.FLOW | DataType.SUM
    section_required = True
    wildcard_input = True
    options = (
        Option("file", str, "/var/log/ulogd.json", help="path of the JSON file"),
        Option("sync", int, 0, help="1: every batch reaches the file at once"),
        Option("timestamp", int, 1, help="1: add a timestamp field"),
        Option("eventv1", int, 0, help="1: Logstash event v1 (@version, @timestamp)"),
        Option("device", str, "Netfilter", help="value of the dvc field"),
        Option("boolean_label", int, 0, help="1: raw.label becomes action allowed/blocked"),
        Option("mode", str, "file", help="file", check=_check_mode),
        Option("host", str, "127.0.0.1", help="host for tcp/udp modes"),
        Option("port", str, "12345", help="port for tcp/udp modes"),
    )

    def configure(self) -> None:
        cfg = self.config
        self.sink = FileSink(cfg.file, bool(cfg.sync), self.counters, str(self))
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
        try:
            self.sink.open()
        except OSError as exc:
            raise PluginError(f"can't open JSON log file {self.sink.path}: {exc.strerror}") \
                from None

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
        self.sink.write_line("{" + ", ".join(parts) + "}\n")

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
        self.sink.flush(force)

    def signal(self, signum: int) -> None:
        if signum == signal.SIGHUP:
            self.sink.reopen()

    def stop(self) -> None:
        self.sink.close()
