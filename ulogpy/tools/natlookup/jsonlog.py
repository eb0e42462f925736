"""JSON history: NFCT JSON lines as ulogd's and ulogpy's JSON output write them.

`json:PATH` with globs; rotated files (`flows.json.1`, `flows.json.2.gz`) are
read like any other, `.gz` transparently.  A flow's NEW and DESTROY records
may sit in different files (rotation between them), so every file of the
source is scanned before records are merged.

Scanning is the cost: the file is searched in big chunks for the public port
(or address) as bytes, and only the lines around a hit are parsed, so almost
all of a large file is never split into lines or decoded.
"""

from __future__ import annotations

import glob
import gzip
import os
import re
import zlib
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import orjson

from ulogpy.tools.natlookup.errors import LookupFailed
from ulogpy.tools.natlookup.flows import Flow, Query, same_ip
from ulogpy.tools.natlookup.merge import DESTROY, NEW, Record, merge
from ulogpy.tools.natlookup.progress import Progress
from ulogpy.tools.natlookup.timeparse import parse_json_timestamp

PREFIX = "json:"
_ROTATED = re.compile(r"(\.\d+|-\d{8,10})(\.gz)?$")
_GLOB_CHARS = re.compile(r"[*?\[]")
CHUNK = 8 << 20  # bytes read at a time


class JsonSource:
    def __init__(self, pattern: str, label: str | None = None, rotated: bool = False):
        self.pattern = pattern
        self.label = label or f"{PREFIX}{pattern}"
        #: Also read `PATH.N[.gz]` / `PATH-DATE[.gz]` (a config's file and its rotations).
        self.rotated = rotated
        self.notes: list[str] = []

    @classmethod
    def from_spec(cls, text: str) -> JsonSource:
        path = text[len(PREFIX):]
        if not path:
            raise LookupFailed(f"--source {text!r}: give a path, json:/var/log/ulogpy/flows.json")
        return cls(os.path.expanduser(path), label=text)

    def files(self) -> list[str]:
        if self.rotated:
            found = [p for p in glob.glob(glob.escape(self.pattern) + "*")
                     if p == self.pattern or _ROTATED.fullmatch(p[len(self.pattern):])]
            if not found:
                raise LookupFailed(f"{self.label}: no such file {self.pattern}")
        elif _GLOB_CHARS.search(self.pattern):
            found = glob.glob(self.pattern)
            if not found:
                raise LookupFailed(f"{self.label}: no file matches {self.pattern}")
        else:
            found = [self.pattern]
        files = sorted(p for p in found if not os.path.isdir(p))
        for path in files:
            if not os.path.exists(path):
                raise LookupFailed(f"{self.label}: no such file {path}")
        if not files:
            raise LookupFailed(f"{self.label}: {self.pattern} is a directory")
        return files

    def lookup(self, q: Query) -> list[Flow]:
        files = self.files()
        needles = _needles(q)
        total = sum(os.path.getsize(p) for p in files)
        bar = Progress(total, f"scanning {self.label}")
        records: list[Record] = []
        self.malformed = done = 0
        try:
            for path in files:
                def shown(n: int, before: int = done) -> None:
                    bar.update(before + n)

                for line in _candidates(path, needles, self.label, shown):
                    rec = self._record(line, q)
                    if rec is not None:
                        records.append(rec)
                done += os.path.getsize(path)
        finally:
            bar.close()
        if self.malformed:
            self.notes.append(f"{self.label}: {self.malformed} line(s) not JSON, skipped")
        return merge(records)

    def _record(self, line: bytes, q: Query) -> Record | None:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            if line.strip():
                self.malformed += 1
            return None
        if not isinstance(obj, dict):
            return None
        if q.port is not None and obj.get("reply.l4.dport") != q.port:
            return None
        if not same_ip(obj.get("reply.ip.daddr.str"), q.ip):
            return None
        return record_of(obj, self.label)


def record_of(obj: dict[str, Any], source: str) -> Record | None:
    """One NFCT JSON object (spec 5.4 field names) as a merge `Record`."""
    start = _stamp(obj.get("flow.start.sec"), obj.get("flow.start.usec"))
    end = _stamp(obj.get("flow.end.sec"), obj.get("flow.end.usec"))
    event = obj.get("ct.event")
    if not isinstance(event, int):
        event = DESTROY if end is not None else NEW
    stamp = obj.get("timestamp", obj.get("@timestamp"))
    seen = parse_json_timestamp(stamp) if isinstance(stamp, str) else None
    if start is None and end is None and seen is None:
        return None
    return Record(
        event=event,
        tuple=(obj.get("orig.ip.protocol"), obj.get("src_ip", obj.get("orig.ip.saddr.str")),
               obj.get("orig.l4.sport"), obj.get("dest_ip", obj.get("orig.ip.daddr.str")),
               obj.get("orig.l4.dport"), obj.get("reply.ip.saddr.str"),
               obj.get("reply.l4.sport"), obj.get("reply.ip.daddr.str"),
               obj.get("reply.l4.dport")),
        ct_id=obj.get("ct.id"), start=start, end=end, seen=seen,
        orig_bytes=obj.get("orig.raw.pktlen"), reply_bytes=obj.get("reply.raw.pktlen"),
        mark=obj.get("ct.mark"), zone=obj.get("ct.zone"), source=source,
    )


def _stamp(sec: Any, usec: Any) -> float | None:
    if not isinstance(sec, int) or sec == 0:
        return None
    return sec + (usec / 1e6 if isinstance(usec, int) else 0.0)


def _needles(q: Query) -> tuple[bytes, bytes, bytes]:
    """(field name as ulogd writes it, that field with the value, the bare value).

    The long needle is twice as fast to search as a few digits, but it holds only
    for jansson's layout (ulogd and ulogpy); a file in any other layout is searched
    for the bare value (a superset: the parsed record is checked anyway)."""
    if q.port is not None:
        key, value = b'"reply.l4.dport": ', str(q.port).encode()
    else:
        key, value = b'"reply.ip.daddr.str": ', b'"' + q.ip.encode() + b'"'
    return key, key + value, value


def _candidates(path: str, needles: tuple[bytes, bytes, bytes], label: str,
                progress: Callable[[int], None]) -> Iterator[bytes]:
    """The lines of `path` that may hold the queried value, found with `bytes.find`
    over big chunks, so lines that cannot match are never split or decoded.
    `progress` gets the bytes read so far (compressed ones for .gz)."""
    try:
        raw: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise LookupFailed(f"{label}: cannot read {path}: {exc.strerror}") from None
    try:
        stream: BinaryIO = gzip.GzipFile(fileobj=raw) if path.endswith(".gz") else raw
        tail = b""  # the start of a line the previous chunk cut
        needle = b""
        while chunk := stream.read(CHUNK):
            progress(raw.tell())
            if not needle:  # decided on the first chunk: this writer's layout
                needle = needles[1] if needles[0] in chunk else needles[2]
            first = chunk.find(b"\n")
            if first == -1:
                tail += chunk
                continue
            line = tail + chunk[:first]
            if needle in line:
                yield line
            last = chunk.rfind(b"\n")
            pos = chunk.find(needle, first + 1, last)
            while pos != -1:
                end = chunk.find(b"\n", pos)
                yield chunk[chunk.rfind(b"\n", 0, pos) + 1:end]
                pos = chunk.find(needle, end + 1, last)
            tail = chunk[last + 1:]
        if needle and needle in tail:  # a last line without its newline
            yield tail
    except (OSError, EOFError, zlib.error) as exc:
        raise LookupFailed(f"{label}: cannot read {path}: {exc}") from None
    finally:
        raw.close()
