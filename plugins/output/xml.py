"""XML: flows, packets or accounting sums as XML elements in a timestamped file (spec 4.18).

The file is ``<directory>/ulogd-<flow|pkt|sum>-DDMMYYYY-HHMMSS.xml`` (local time
of opening; the infix from the stack's input: NFCT gives flows, NFLOG packets,
NFACCT sums).  It starts with an XML declaration and ``<conntrack>``,
``<packet>`` or ``<sum>``, and gets one element per event and line, as the
netfilter libraries print them (`xmltext`); the closing tag is written when the
file is closed.  SIGHUP closes the file (with its closing tag) and starts a new
one with a new name.  `stdout=1` writes to standard output instead; there SIGHUP
ends the document and starts another on standard output (ulogd 2.0.8 writes to a
file in `directory` from then on, forgetting `stdout`).

As in ulogd, an element longer than ulogd's 4 KiB buffer (`element_limit`
bytes; a large packet's payload in hex) is not written; ulogpy counts it
(`oversized`, and `failed` with a log line) where ulogd is silent, and
`element_limit=0` writes every element whole.  A write failure (disk full)
keeps the records queued and retries into the same file, with no element cut in
half; only a clean close (SIGHUP, exit) ends a file with its closing tag.

Sample configuration (flows, one element per connection at its end)::

    stack=ct1:NFCT,xml1:XML

    [ct1]
    [xml1]
    directory="/var/log/ulog/"
    sync=1
"""

from __future__ import annotations

import contextlib
import os
import time

from ulogpy.plugins.output import xmltext

from ulogpy.core.keys import RAW, keys
from ulogpy.core.plugin import DataType, Option, OutputPlugin, Unavailable, counters
from ulogpy.delivery.options import queue_options
from ulogpy.transports.file import LAZY_LINES, LAZY_SECONDS, WRITE_LINES, FileSink

HEADER = '<?xml version="1.0" encoding="utf-8"?>\n'
#: (file name infix, root element) by the stack input's data type.
KINDS = {DataType.FLOW: ("flow", "conntrack"), DataType.RAW: ("pkt", "packet"),
         DataType.PACKET: ("pkt", "packet"), DataType.SUM: ("sum", "sum")}
#: ulogd prints each element into a 4096-byte buffer, its final NUL included.
ULOGD_ELEMENT_LIMIT = 4095


def _not_negative(value: int) -> str | None:
    return None if value >= 0 else "must be 0 (no limit) or a positive number of characters"


class XmlSink(FileSink):
    """One XML document at a time: a new timestamped file at each clean open, its
    closing tag at each clean close.  After a failed write the same file is opened
    again (the writer retries), so an outage neither splits nor ends the document."""

    def __init__(self, directory: str, infix: str, root: str, to_stdout: bool) -> None:
        super().__init__(os.path.join(directory, f"ulogd-{infix}-DDMMYYYY-HHMMSS.xml"))
        self.directory = directory
        self.infix = infix
        self.root = root
        self.to_stdout = to_stdout
        self.target = "stdout" if to_stdout else self.path
        self.current: str | None = None  # the open document's path, until a clean close
        self.begun = False  # its declaration and root element are written
        self.failed = False

    def new_path(self) -> str:
        tm = time.localtime()
        return os.path.abspath(os.path.join(
            self.directory, f"ulogd-{self.infix}-{tm.tm_mday:02d}{tm.tm_mon:02d}"
            f"{tm.tm_year:04d}-{tm.tm_hour:02d}{tm.tm_min:02d}{tm.tm_sec:02d}.xml"))

    def open(self) -> None:
        self.failed = False
        if self.current is None:
            self.current = "stdout" if self.to_stdout else self.new_path()
            self.begun = False
        if self.to_stdout:
            self.fd = 1
        else:
            self.path = self.target = self.current
            super().open()
        if not self.begun:
            self._put(HEADER + f"<{self.root}>\n")
            self.begun = True

    def _put(self, text: str) -> None:
        try:
            self.write([text])
        except Unavailable:
            self.close()
            raise

    def write(self, lines: list[str]) -> int:
        """Whole blocks of lines, each written completely or not at all: a block a full
        disk cut short is cut off the file again, so the retry leaves no broken element
        (the file is this output's own, so nothing else is appended meanwhile)."""
        fd = self.fd
        assert fd is not None
        done = 0
        for start in range(0, len(lines), WRITE_LINES):
            block = lines[start:start + WRITE_LINES]
            data = "".join(block).encode("utf-8", "surrogateescape")
            size = -1
            try:
                if fd != 1:
                    size = os.lseek(fd, 0, os.SEEK_END)
                written = os.write(fd, data)
                while written < len(data):
                    written += os.write(fd, data[written:])
            except OSError as exc:
                self.failed = True
                if size >= 0:
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, size)
                raise Unavailable(f"cannot write {self.target}: {exc.strerror}",
                                  written=done) from None
            done += len(block)
        return done

    def close(self) -> None:
        if self.fd is None:
            return
        if not self.failed:
            try:
                self.write([f"</{self.root}>\n"])
                self.current = None
            except Unavailable:
                pass  # the document stays open: the next open appends to it
        if self.fd == 1:
            self.fd = None
        else:
            super().close()


class XML(OutputPlugin):
    name = "XML"
    description = "Flows, packets or sums as XML elements in a timestamped file"
    input_type = DataType.RAW | DataType.FLOW | DataType.SUM
    section_required = True
    renders_text = True
    open_error = "can't open XML file:"
    reopen_notice = "XML: reopening logfile"
    counter_table = counters(
        ("oversized", False, "elements longer than element_limit, not written (each "
         "also counted as failed)"),
    )
    options = (
        Option("directory", str, "/var/log/", help="where the timestamped files are made"),
        Option("sync", int, 0, help="1: every batch reaches the file at once"),
        Option("stdout", int, 0, help="1: write to standard output instead of a file"),
        Option("element_limit", int, ULOGD_ELEMENT_LIMIT, check=_not_negative, ulogd=False,
               help="longest element written, in bytes (ulogd's buffer; 0: no limit)"),
        *queue_options(),
    )
    input_keys = keys(("ct", RAW, True), ("raw", RAW, True), ("sum", RAW, True))

    def configure(self) -> None:
        source = self.source_type or DataType.FLOW
        infix, root = next((kind for flag, kind in KINDS.items() if source & flag),
                           KINDS[DataType.FLOW])
        #: A stack fed by NFCT keeps whole conntrack messages in `ct`; NFLOG's `ct`
        #: (attach_conntrack) holds the attributes only.
        self.ct_is_message = bool(source & DataType.FLOW)
        self.limit = self.config.element_limit
        self.transport = XmlSink(self.config.directory, infix, root, bool(self.config.stdout))

    def batching(self) -> tuple[int, float]:
        """As the text files: `sync` writes each batch at once, else lines wait a little."""
        return (LAZY_LINES, 0.0) if self.config.sync else (LAZY_LINES, LAZY_SECONDS)

    def render(self, record: dict) -> str:
        ct = record.get("ct")
        if ct is not None:
            if self.ct_is_message:
                text = xmltext.flow(ct)
            else:
                family = record["raw"][16] if "raw" in record else 0
                text = xmltext.flow_from_attrs(family, ct, 0)
        elif (raw := record.get("raw")) is not None:
            text = xmltext.packet(raw)
        elif (total := record.get("sum")) is not None:
            text = xmltext.total(total)
        else:
            raise ValueError("event without ct, raw or sum")
        if self.limit and len(text) > self.limit // 4 and \
                (size := len(text.encode("utf-8", "surrogateescape"))) > self.limit:
            self.counters.add("oversized")
            raise ValueError(f"element of {size} bytes is longer than "
                             f"element_limit ({self.limit}); not written")
        return text + "\n"
