"""PCAP: logged packets into a libpcap file (link type raw IP), as ulogd writes it.

The file has ulogd's global header (magic a1b2c3d4 in host byte order,
version 2.4, `thiszone` = libc's `timezone`, snaplen 65536, link type 101)
and, per packet, a record header (the packet's time if the stack has both
halves of it, else now; captured length `raw.pktlen`; original length
`ip.totlen` for IPv4, `ip6.payloadlen` + 40 for IPv6, else the captured
length) followed by the captured bytes (spec 4.20).

A file that exists and is not empty is appended to, at start and on
SIGHUP's reopen (logrotate), with no second header.  Each record is
rendered in the reader's thread into one text item whose UTF-8 encoding
with `surrogateescape` is exactly the record's bytes, so the file transport,
the spool and the delivery model carry it unchanged.  Unlike ulogd, a failed
write (disk full) never leaves half a record behind: the file is cut back to
the last whole record and the records wait in the queue (counted
`write_errors`, retried with backoff).

Sample configuration::

    stack=log2:NFLOG,base1:BASE,pcap1:PCAP

    [pcap1]
    file="/var/log/ulog/ulogd.pcap"
    sync=1
"""

from __future__ import annotations

import os
import struct
import time

from ulogpy.core.keys import U8, U16, U32, keys
from ulogpy.core.plugin import DataType, Option, Unavailable
from ulogpy.delivery.options import queue_options
from ulogpy.transports.file import FileOutput, FileSink

PCAP_MAGIC = 0xA1B2C3D4
PCAP_VERSION = (2, 4)
PCAP_SNAPLEN = 65536
LINKTYPE_RAW = 101
#: Family numbers (`oob.family`): AF_INET, AF_INET6.
AF_INET, AF_INET6 = 2, 10
IPV6_HEADER_LEN = 40

_GLOBAL = struct.Struct("=IHHiIII")
_RECORD = struct.Struct("=IIII")


def global_header() -> bytes:
    """ulogd's file header; `thiszone` is libc's `timezone` (seconds west of UTC)."""
    time.tzset()
    return _GLOBAL.pack(PCAP_MAGIC, *PCAP_VERSION, time.timezone, 0, PCAP_SNAPLEN,
                        LINKTYPE_RAW)


def as_text(data: bytes) -> str:
    """Bytes as a text item that the file transport writes back as exactly those bytes."""
    return data.decode("utf-8", "surrogateescape")


class PcapSink(FileSink):
    """The pcap file: a header when it is new or empty, whole records only."""

    def open(self) -> None:
        super().open()
        assert self.fd is not None
        try:
            if os.fstat(self.fd).st_size == 0:
                self._write_all(global_header())
        except OSError as exc:
            self.close()
            raise Unavailable(f"{self.path}: {exc.strerror}") from None

    def write(self, lines: list[str]) -> int:
        """Write the records; on a failure, cut the file back to the last whole record
        (a pcap reader stops at a torn one) before `Unavailable` keeps the rest queued."""
        fd = self.fd
        assert fd is not None
        done = 0
        size = os.fstat(fd).st_size
        for line in lines:
            data = line.encode("utf-8", "surrogateescape")
            try:
                self._write_all(data)
            except OSError as exc:
                try:
                    os.ftruncate(fd, size)
                except OSError:
                    pass
                raise Unavailable(f"Error during write: {exc.strerror}", written=done) \
                    from None
            size += len(data)
            done += 1
        return done

    def _write_all(self, data: bytes) -> None:
        assert self.fd is not None
        written = os.write(self.fd, data)
        while written < len(data):
            written += os.write(self.fd, data[written:])


class PCAP(FileOutput):
    name = "PCAP"
    description = "libpcap capture file (raw IP) of the logged packets"
    input_type = DataType.PACKET
    section_required = True  # ulogd: "error during configure of plugin PCAP" without one
    open_error = "can't open pcap file"
    reopen_notice = "reopening capture file"
    options = (
        Option("file", str, "/var/log/ulogd.pcap", help="path of the capture file"),
        Option("sync", int, 0, help="1: every batch reaches the file at once"),
        *queue_options(),
    )
    # ulogd declares raw.pkt as a 32-bit integer (a pointer in its key union); `-i`
    # prints that, and the stack binds keys by name only.
    input_keys = keys(
        ("raw.pkt", U32), ("raw.pktlen", U32), ("ip.totlen", U16), ("oob.time.sec", U32),
        ("oob.time.usec", U32), ("oob.family", U8), ("ip6.payloadlen", U16),
    )

    def configure(self) -> None:
        self.transport = PcapSink(self.config.file)

    def render(self, record: dict) -> str:
        pkt = record.get("raw.pkt") or b""
        caplen = record.get("raw.pktlen")
        if caplen is None:
            caplen = len(pkt)
        data = bytes(pkt[:caplen])
        caplen = len(data)
        family = record.get("oob.family")
        if family == AF_INET and (totlen := record.get("ip.totlen")) is not None:
            length = totlen
        elif family == AF_INET6 and (payload := record.get("ip6.payloadlen")) is not None:
            length = payload + IPV6_HEADER_LEN
        else:
            length = caplen
        sec, usec = record.get("oob.time.sec"), record.get("oob.time.usec")
        if sec is None or usec is None:
            now = time.time_ns() // 1000
            sec, usec = now // 1_000_000, now % 1_000_000
        return as_text(_RECORD.pack(sec & 0xFFFFFFFF, usec, caplen, length) + data)
