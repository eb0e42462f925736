"""JSON: one JSON object per event, field for field as ulogd writes it (spec 5.4).

Field order: `@version` (eventv1), the timestamp, `dvc`, then every key of
the stack in stack order, once, under its CIM name where it has one
(`src_ip`, `dest_port`, ...).  Binary addresses and raw data are left out,
as ulogd leaves them out.

Each line comes from a function generated for the record's key set the first
time that set comes (`compile_render`); records with strings to escape, odd
value types, or too many key sets take the generic field-by-field way, which
writes the same bytes.

`mode` picks where records go: a file (`ulogpy.transports.file`), or a tcp,
udp or unix stream socket (`ulogpy.transports.sockets`).  The bytes are the
same either way, and so is the delivery (`ulogpy.delivery`): unlike ulogd, a
slow or absent peer never blocks the daemon and does not fail start-up
(records wait in the output's buffer, memory then, with queue_policy=spool,
disk, and the connection is retried).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from operator import itemgetter

from ulogpy import fastpath
from ulogpy.core.codegen import define
from ulogpy.core.keys import KeyType
from ulogpy.core.plugin import DataType, Option, OutputPlugin, PluginError
from ulogpy.delivery.options import queue_options
from ulogpy.render.jsontext import fstring_literal, json_string, key_prefix, needs_escape
from ulogpy.transports.file import FileOutput
from ulogpy.transports.sockets import Endpoint, SocketTransport, check_unix_path

#: Seconds a connected peer gets at exit to take what is still queued.
CLOSE_GRACE = 2.0
_SKIPPED = {KeyType.IPADDR, KeyType.RAW, KeyType.RAWSTR, KeyType.INT64, KeyType.NONE}
_MODES = ("file", "tcp", "udp", "unix")


def _check_mode(value: str) -> str | None:
    return None if value.lower() in _MODES else f"unknown mode '{value}'"


def _label(value: int) -> str:
    """`boolean_label`: ulogd's NFLOG label 0 means the packet was blocked."""
    return '"allowed"' if value else '"blocked"'


def local_time_parts(sec: int) -> tuple[str, str]:
    """ulogd's JSON time of `sec` in two parts, `.usec` going between them when known:
    the local time, and `+HHMM` unless the offset is 0."""
    lt = time.localtime(sec)
    off = lt.tm_gmtoff
    if not off:
        return time.strftime("%Y-%m-%dT%H:%M:%S", lt), ""
    sign = "+" if off > 0 else "-"
    off = abs(off) // 60
    return time.strftime("%Y-%m-%dT%H:%M:%S", lt), f"{sign}{off // 60:02d}{off % 60:02d}"


#: ``render(record, quoted timestamp) -> line``, or None when a string value has
#: something to escape (the caller then builds the line the generic way).
Render = Callable[[dict, str], "str | None"]
#: Key sets a JSON instance compiles a render function for; others take the generic way.
MAX_RENDERS = 256


def compile_render(head: list[str], ts_prefix: str | None, dvc: str,
                   chosen: list[tuple[str, str, bool]]) -> Render:
    """Generate the render function of one key set.

    Why: a stack gives up to a hundred keys of which a record holds a third, and
    which third depends on the kind of event.  One function per key set (made the
    first time a record with that set comes) takes the values in one `itemgetter`
    call and joins them in one f-string, instead of a look-up and a concatenation per
    field of the stack.  `chosen` lists (JSON key prefix, record key, is a string).
    String values go in unescaped after one check that none needs escaping; a record
    that fails it gets None, and the caller builds its line the generic way.  (Records
    never hold None: an absent key is an invalid one.)
    """
    if ts_prefix is not None:
        text = fstring_literal("{" + ", ".join([*head, ts_prefix])) + "{ts}" + \
            fstring_literal(", " + dvc)
    else:
        text = fstring_literal("{" + ", ".join([*head, dvc]))
    strings = []
    for i, (prefix, _key, is_string) in enumerate(chosen):
        if is_string:
            value = f'"{{_{i}}}"'
            strings.append(f"_{i}")
        else:
            value = f"{{_{i}}}"
        text += fstring_literal(", " + prefix) + value
    lines = ["def render(record, ts):"]
    if chosen:
        lines.append(f"    {', '.join(f'_{i}' for i in range(len(chosen)))}, = _take(record)")
    if strings:  # (joined, not formatted: a value that is no str must raise TypeError)
        text_of = strings[0] if len(strings) == 1 else f"_join(({', '.join(strings)},))"
        lines.append(f"    if _needs_escape({text_of}) is not None:")
        lines.append("        return None")
    lines.append(f"    return f'{text}}}}}\\n'")
    names = [key for _prefix, key, _is_string in chosen]
    if len(names) > 1:
        take = itemgetter(*names)
    else:
        take = (lambda record, key=names[0]: (record[key],)) if names else (lambda record: ())
    scope = {"_take": take, "_needs_escape": needs_escape, "_join": "".join}
    return define(lines, "render", "JSON render", scope)


def compiled_line(head: list[str], ts_prefix: str | None, dvc: str,
                  fields: tuple[tuple[str, object, str, tuple[str, ...]], ...]) -> Render | None:
    """The compiled twin of `JSON._generic` for `fields`, or None where it is not built.

    It writes the same bytes as the generic way (tests/unit/test_fastpath.py) for
    every record, and returns None where the generic way must decide (a string key
    holding no str, or text that is not valid UTF-8).
    """
    if fastpath.compiled is None:
        return None
    if ts_prefix is not None:
        lead, after = "{" + ", ".join([*head, ts_prefix]), ", " + dvc
    else:
        lead, after = "{" + ", ".join([*head, dvc]), ""
    table = tuple(((", " + prefix).encode(), render is json_string, (name, *others))
                  for prefix, render, name, others in fields)
    return fastpath.compiled.JsonLine(lead.encode(), after.encode(), ts_prefix is not None,
                                      table)


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
        *queue_options(),
    )

    def configure(self) -> None:
        cfg = self.config
        self.mode = cfg.mode.lower()
        if self.mode == "file":
            super().configure()
        else:
            self.transport = SocketTransport(_endpoint(self.mode, cfg))
            self.reopen_notice = "JSON: reopening socket"
            self.open_error = None  # a peer absent at start is retried, never fatal
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
        #: boolean_label's renderer is not a plain str or JSON string: generic lines only.
        self.custom_render = any(f[1] not in (str, json_string) for f in self.fields)
        self._renders: dict[tuple, Render] = {}
        self._fallback: Render = lambda record, ts: None
        self._stamps: dict[int, tuple[str, str, str]] = {}
        #: The compiled line writer over `fields`, where it is built (see `compiled_line`).
        self._line = None if self.custom_render else compiled_line(self.head, self.ts_prefix,
                                                                   self.dvc, self.fields)
        if self._line is not None and self.ts_prefix is not None:
            if not (self.time_bound or self.usec_bound):
                self.render = self._render_now  # type: ignore[method-assign]
            elif self.time_bound and self.usec_bound:
                self.render = self._render_stamped  # type: ignore[method-assign]

    def batching(self) -> tuple[int, float]:
        return super().batching() if self.mode == "file" else OutputPlugin.batching(self)

    def stop_timeout(self) -> float:
        return super().stop_timeout() if self.mode == "file" else CLOSE_GRACE

    def render(self, record: dict) -> str:
        if self._line is not None:
            line = self._line(record, self._timestamp(record) if self.ts_prefix is not None
                              else "")
            return line if line is not None else self._generic(record)
        render = self._renders.get(tuple(record))
        if render is None:
            render = self._compile(record)
        ts = self._timestamp(record) if self.ts_prefix is not None else ""
        try:
            line = render(record, ts)
        except TypeError:  # a string key holding no str: the generic way decides
            line = None
        return line if line is not None else self._generic(record)

    def _render_now(self, record: dict) -> str:
        """`render` with the compiled line, for stacks that give no packet time (NFCT):
        `_timestamp` written out, one call less per line."""
        sec = int(time.time())
        stamp = self._stamps.get(sec) or self._stamp(sec)
        line = self._line(record, stamp[2])
        return line if line is not None else self._generic(record)

    def _render_stamped(self, record: dict) -> str:
        """`render` with the compiled line, for stacks that give the packet's time in
        seconds and microseconds (NFLOG): `_timestamp` written out, one call less."""
        sec = record.get("oob.time.sec")
        if sec is None:
            sec = int(time.time())
        stamp = self._stamps.get(sec) or self._stamp(sec)
        usec = record.get("oob.time.usec")
        line = self._line(record, stamp[2] if usec is None
                          else f'"{stamp[0]}.{usec:06d}{stamp[1]}"')
        return line if line is not None else self._generic(record)

    def _generic(self, record: dict) -> str:
        """The line built field by field: strings to escape, boolean_label, odd key sets."""
        parts = list(self.head)
        get = record.get
        if self.ts_prefix is not None:
            parts.append(self.ts_prefix + self._timestamp(record))
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
        return "{" + ", ".join(parts) + "}\n"

    def _compile(self, record: dict) -> Render:
        """The render function of the key set of `record` (see `Render`), remembered."""
        if len(self._renders) >= MAX_RENDERS or self.custom_render:
            return self._fallback
        present = set(record)
        chosen: list[tuple[str, str, bool]] = []  # (prefix, key, is a string)
        for prefix, render, name, others in self.fields:
            key = name if name in present else None
            for other in others:
                if other in present:
                    key = other
            if key is not None:
                chosen.append((prefix, key, render is json_string))
        render = compile_render(self.head, self.ts_prefix, self.dvc, chosen)
        self._renders[tuple(record)] = render
        return render

    def _timestamp(self, record: dict) -> str:
        """The quoted time: the packet's if the stack gives one, else now."""
        sec = record.get("oob.time.sec") if self.time_bound else None
        if sec is None:
            sec = int(time.time())
        stamp = self._stamps.get(sec)
        if stamp is None:
            stamp = self._stamp(sec)
        if self.usec_bound and (usec := record.get("oob.time.usec")) is not None:
            return f'"{stamp[0]}.{usec:06d}{stamp[1]}"'
        return stamp[2]

    def _stamp(self, sec: int) -> tuple[str, str, str]:
        """(local time, offset, the two quoted) of `sec`, remembered: packets of one batch
        share a second or two, and `localtime` + `strftime` cost more than the rest."""
        if len(self._stamps) >= 64:
            self._stamps.clear()
        date, offset = local_time_parts(sec)
        stamp = self._stamps[sec] = (date, offset, f'"{date}{offset}"')
        return stamp


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
