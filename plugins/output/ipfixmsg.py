"""IPFIX (RFC 7011) messages from conntrack records, for the IPFIX output.

The templates are tables: one row per Information Element (IANA number,
length, how the value comes from a record).  The same row gives the
template set and the data record layout (`struct` format), so the two can
never disagree.

* `COMPAT` is ulogd 2.0.8's template 256, field for field: IPv4 addresses,
  32-bit total counters (orig + reply), start/end seconds, ports, protocol,
  applicationId = ct.mark.
* `EXT4` / `EXT6` (ulogpy's `extended=1`): 64-bit counters, millisecond
  start/end, the RFC 8158 NAT fields taken from the reply tuple (the
  translated source is where replies go back to), and the time of export.

`MessageBuilder` packs records into messages of at most `mtu` bytes, with
the template set where the caller asks for it and the sequence number RFC
7011 defines (data records sent before this message in the session).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

VERSION = 10
HEADER = struct.Struct("!HHIII")  # version, length, export time, sequence, domain id
SET_HEADER = struct.Struct("!HH")
TEMPLATE_SET_ID = 2
NFPROTO_IPV4, NFPROTO_IPV6 = 2, 10
#: ct.event values (ulogd's) and natEvent values (IANA "NAT44 session create/delete").
CT_NEW, CT_DESTROY = 1, 4
NAT44_CREATE, NAT44_DELETE = 1, 2

Value = Callable[[dict, int], "int | bytes"]


def _get(name: str, default: int | bytes = 0) -> Value:
    return lambda r, now: r.get(name, default)


def _total32(what: str) -> Value:
    """orig + reply, as ulogd sends it: cut to 32 bits."""
    o, p = f"orig.raw.{what}", f"reply.raw.{what}"
    return lambda r, now: (r.get(o, 0) + r.get(p, 0)) & 0xFFFFFFFF


def _total64(what: str) -> Value:
    o, p = f"orig.raw.{what}", f"reply.raw.{what}"
    return lambda r, now: (r.get(o, 0) + r.get(p, 0)) & 0xFFFFFFFFFFFFFFFF


def _millis(side: str) -> Value:
    sec, usec = f"flow.{side}.sec", f"flow.{side}.usec"
    return lambda r, now: r.get(sec, 0) * 1000 + r.get(usec, 0) // 1000


def _nat_event(r: dict, now: int) -> int:
    """NAT44 session create/delete when the reply tuple shows a translated source."""
    if r.get("reply.ip.daddr") == r.get("orig.ip.saddr") and \
            r.get("reply.l4.dport", 0) == r.get("orig.l4.sport", 0):
        return 0
    event = r.get("ct.event", 0)
    return NAT44_CREATE if event == CT_NEW else NAT44_DELETE if event == CT_DESTROY else 0


def _now(r: dict, now: int) -> int:
    return now


_V4_ZERO, _V6_ZERO = bytes(4), bytes(16)


@dataclass(frozen=True)
class Field:
    """One Information Element of a template: name, IANA id, length, value."""

    name: str
    ie: int
    length: int
    value: Value
    #: The value is bytes (an address), not a number.
    octets: bool = False


_FORMATS = {1: "B", 2: "H", 4: "I", 8: "Q"}


@dataclass(frozen=True)
class Template:
    id: int
    fields: tuple[Field, ...]

    def __post_init__(self) -> None:
        fmt = "!" + "".join(f"{f.length}s" if f.octets else _FORMATS[f.length]
                            for f in self.fields)
        object.__setattr__(self, "record", struct.Struct(fmt))
        body = struct.pack("!HH", self.id, len(self.fields)) + b"".join(
            struct.pack("!HH", f.ie, f.length) for f in self.fields)
        object.__setattr__(self, "definition", body)
        object.__setattr__(self, "values", tuple(f.value for f in self.fields))

    record: struct.Struct = None  # type: ignore[assignment]
    definition: bytes = b""
    values: tuple[Value, ...] = ()

    def encode(self, r: dict, now_ms: int) -> bytes:
        return self.record.pack(*(value(r, now_ms) for value in self.values))


def _ports() -> tuple[Field, ...]:
    return (Field("sourceTransportPort", 7, 2, _get("orig.l4.sport")),
            Field("destinationTransportPort", 11, 2, _get("orig.l4.dport")))


#: ulogd 2.0.8's template (its field order, lengths and values).
COMPAT = Template(256, (
    Field("sourceIPv4Address", 8, 4, _get("orig.ip.saddr", _V4_ZERO), True),
    Field("destinationIPv4Address", 12, 4, _get("orig.ip.daddr", _V4_ZERO), True),
    Field("packetTotalCount", 86, 4, _total32("pktcount")),
    Field("octetTotalCount", 85, 4, _total32("pktlen")),
    Field("flowStartSeconds", 150, 4, _get("flow.start.sec")),
    Field("flowEndSeconds", 151, 4, _get("flow.end.sec")),
    *_ports(),
    Field("protocolIdentifier", 4, 1, _get("orig.ip.protocol")),
    Field("applicationId", 95, 4, _get("ct.mark")),
))


def _extended(tid: int, src: Field, dst: Field, post_src: Field,
              nat: tuple[Field, ...]) -> Template:
    return Template(tid, (
        src, dst, post_src, *_ports(),
        Field("postNAPTSourceTransportPort", 227, 2, _get("reply.l4.dport")),
        Field("protocolIdentifier", 4, 1, _get("orig.ip.protocol")),
        *nat,
        Field("packetTotalCount", 86, 8, _total64("pktcount")),
        Field("octetTotalCount", 85, 8, _total64("pktlen")),
        Field("flowStartMilliseconds", 152, 8, _millis("start")),
        Field("flowEndMilliseconds", 153, 8, _millis("end")),
        Field("applicationId", 95, 4, _get("ct.mark")),
        Field("observationTimeMilliseconds", 323, 8, _now),
    ))


#: ulogpy's `extended=1`: IPv4 with NAT44 (template 257), IPv6 (258; no natEvent: IANA
#: has no NAT66 values).  Ids of their own, so a collector that knew ulogd's 256 from an
#: earlier run never decodes one as the other.
EXT4 = _extended(257, Field("sourceIPv4Address", 8, 4, _get("orig.ip.saddr", _V4_ZERO), True),
                 Field("destinationIPv4Address", 12, 4, _get("orig.ip.daddr", _V4_ZERO), True),
                 Field("postNATSourceIPv4Address", 225, 4, _get("reply.ip.daddr", _V4_ZERO), True),
                 (Field("natEvent", 230, 1, _nat_event),))
EXT6 = _extended(258, Field("sourceIPv6Address", 27, 16, _get("orig.ip.saddr", _V6_ZERO), True),
                 Field("destinationIPv6Address", 28, 16, _get("orig.ip.daddr", _V6_ZERO), True),
                 Field("postNATSourceIPv6Address", 281, 16, _get("reply.ip.daddr", _V6_ZERO), True),
                 ())


def template_set(templates: tuple[Template, ...]) -> bytes:
    body = b"".join(t.definition for t in templates)
    return SET_HEADER.pack(TEMPLATE_SET_ID, SET_HEADER.size + len(body)) + body


def smallest_mtu(templates: tuple[Template, ...]) -> int:
    """A message must hold the header, the template set and one record of each kind."""
    biggest = max(t.record.size for t in templates)
    return HEADER.size + len(template_set(templates)) + SET_HEADER.size + biggest


class MessageBuilder:
    """Packs records into IPFIX messages of one session (one sequence of numbers)."""

    def __init__(self, domain: int, mtu: int, templates: tuple[Template, ...]) -> None:
        self.domain = domain
        self.mtu = mtu
        self.templates = templates
        self.template_bytes = template_set(templates)
        self.sequence = 0

    def restart(self) -> None:
        """A new transport session (a new TCP connection): numbers start again at 0."""
        self.sequence = 0

    def pack(self, records: list[tuple[Template, dict]], with_template: Callable[[], bool],
             now: float | None = None) -> list[tuple[bytes, int]]:
        """(message, records in it) for `records`, in order; `with_template()` is asked
        once per message whether this one carries the template set."""
        now = time.time() if now is None else now
        now_ms = int(now * 1000)
        export = int(now) & 0xFFFFFFFF
        out: list[tuple[bytes, int]] = []
        i = 0
        while i < len(records):
            parts = [self.template_bytes] if with_template() else []
            size = HEADER.size + len(parts[0]) if parts else HEADER.size
            count = 0
            while i < len(records):
                template, record = records[i]
                data = [template.encode(record, now_ms)]
                j = i + 1
                set_size = SET_HEADER.size + len(data[0])
                if size + set_size > self.mtu and count:
                    break
                while j < len(records) and records[j][0] is template and \
                        size + set_size + template.record.size <= self.mtu:
                    data.append(template.encode(records[j][1], now_ms))
                    set_size += template.record.size
                    j += 1
                parts.append(SET_HEADER.pack(template.id, set_size))
                parts.extend(data)
                size += set_size
                count += j - i
                i = j
            header = HEADER.pack(VERSION, size, export, self.sequence & 0xFFFFFFFF, self.domain)
            self.sequence += count
            out.append((header + b"".join(parts), count))
        return out
