"""The on-disk spool: records an output could not take yet, kept across restarts.

Used by every output whose queue policy is `spool` (the databases' default)
while its destination is away or too slow (`ulogpy.delivery.buffer`).

A directory of append-only segment files (`<seq>.spool`), one JSON value
per line (a record, or a file output's rendered line), read back oldest
segment first.  Reading is two-phase: `read`
hands out rows, `commit` (after the output wrote them) moves the
durable position, `rewind` gives them back.  The position inside the
oldest segment lives in `<seq>.pos`; consumed segments are deleted.
Encoding and decoding, most of a spilled item's cost, happen outside every
lock (`encode_all` before `append_lines`, `decode_lines` after
`read_lines`): in a burst the reader spills while the writer replays, and
neither waits for the other's JSON.
`prepend` writes a segment *before* all others: at shutdown, rows still in
memory are older than whatever already overflowed to disk.

Replay is at-least-once: a crash between the database commit and the
position update replays that batch once more.  A lock file keeps two
processes off one directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Callable
from itertools import accumulate, count, repeat
from operator import add
from pathlib import Path
from typing import Any

import orjson

from ulogpy.fastpath import compiled

log = logging.getLogger("ulogpy.spool")
_spool_values = compiled.spool_values if compiled is not None else None
_spool_unhex = compiled.spool_unhex if compiled is not None else None

SEGMENT_BYTES = 16 << 20
#: Bytes a read takes from a segment at once (`read_lines`).
READ_BYTES = 1 << 20
#: Bytes a line is assumed to take when sizing a read for a few rows (a conntrack
#: record's line is about 600; a longer line is read to its end all the same).
LINE_GUESS = 2048
FIRST_SEQ = 1_000_000_000  # room below for segments prepended at shutdown
_SUFFIX = ".spool"


class SpoolError(OSError):
    pass


def encode_record(record: dict, keys: frozenset[str] | None) -> bytes:
    """One spool line: the record's wanted keys; bytes (addresses) as `[hex]`.

    The values go through the compiled `spool_values` where it is built (same dict,
    so the same line; tests/unit/test_spool_records.py), else `python_spool_values`."""
    out = _spool_values(record, keys) if _spool_values is not None else None
    if out is None:
        out = python_spool_values(record, keys)
    return orjson.dumps(out, option=orjson.OPT_APPEND_NEWLINE)


def python_spool_values(record: dict, keys: frozenset[str] | None) -> dict:
    """What a spool line holds of `record` (see `encode_record`)."""
    out = {}
    for name, value in record.items():
        if keys is not None and name not in keys:
            continue
        # (exact classes first: in a burst every record a database output cannot take
        # yet comes through here; 4.1 us a conntrack record against 6.8 with isinstance)
        cls = value.__class__
        if cls is int or cls is str:
            out[name] = value
        elif cls is bytes:
            out[name] = [value.hex()]
        elif isinstance(value, (bytes, bytearray, memoryview)):
            out[name] = [bytes(value).hex()]
        elif isinstance(value, (int, str)):
            out[name] = value
    return out


def decode_record(line: bytes) -> dict:
    """The record of a spool line (`[hex]` back to bytes: compiled `spool_unhex` where
    it is built and the line is plain, else `python_unhex`)."""
    data = orjson.loads(line)
    done = _spool_unhex(data) if _spool_unhex is not None else None
    return python_unhex(data) if done is None else done


def python_unhex(data: dict) -> dict:
    for name, value in data.items():
        if value.__class__ is list:  # (orjson gives exact lists)
            data[name] = bytes.fromhex(value[0])
    return data


def encode_text(text: str) -> bytes:
    """One spool line holding a rendered output line (any text, even undecodable bytes
    kept as surrogates): the bytes it is written as, one per code point, as JSON."""
    return orjson.dumps(text.encode("utf-8", "surrogateescape").decode("latin-1"),
                        option=orjson.OPT_APPEND_NEWLINE)


def decode_text(line: bytes) -> str:
    return orjson.loads(line).encode("latin-1").decode("utf-8", "surrogateescape")


class Spool:
    """Segments in `directory`; thread-safe (reader thread appends, writer thread reads)."""

    def __init__(self, directory: str | os.PathLike, max_bytes: int,
                 encode: Callable[[Any], bytes], segment_bytes: int = SEGMENT_BYTES,
                 decode: Callable[[bytes], Any] = decode_record) -> None:
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.encode = encode
        self.decode = decode
        self.segment_bytes = segment_bytes
        self.lock = threading.Lock()
        self.sizes: dict[int, int] = {}      # seq -> bytes on disk (or in the write buffer)
        self.starts: dict[int, int] = {}     # seq -> committed offset (oldest segment only)
        self._writer = None
        self._wseq: int | None = None
        self._rseq: int | None = None        # read position
        self._roff = 0
        self._rfile = None
        self._rfile_seq: int | None = None
        self._ends: list[tuple[int, int]] = []   # positions after each row handed out
        self._read_end: tuple[int, int] | None = None
        self._lockfd: int | None = None
        self.corrupt = 0
        self.rows_on_disk = 0                # rows appended or found at open, not yet committed

    # -- opening / closing -----------------------------------------------------------
    def open(self) -> int:
        """Lock the directory and find what a previous run left; returns its row count."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise SpoolError(f"spool directory {self.dir} is in use by another process") \
                from None
        self._lockfd = fd
        for path in self.dir.iterdir():
            if path.suffix == _SUFFIX and path.stem.isdigit():
                self.sizes[int(path.stem)] = path.stat().st_size
        for seq in list(self.sizes):
            pos = self.dir / f"{seq}.pos"
            with contextlib.suppress(OSError, ValueError):
                self.starts[seq] = min(int(pos.read_text()), self.sizes[seq])
        for path in self.dir.glob("*.pos"):
            if not path.stem.isdigit() or int(path.stem) not in self.sizes:
                path.unlink(missing_ok=True)
        if self.sizes:
            self._trim_partial_line(max(self.sizes))
        left = 0
        for seq in sorted(self.sizes):
            with open(self._path(seq), "rb") as f:
                f.seek(self.starts.get(seq, 0))
                left += sum(1 for _ in f)
        self.rows_on_disk = left
        self._reset_read()
        return left

    def _trim_partial_line(self, seq: int) -> None:
        """A crash mid-append leaves half a line: cut it so later appends stay parseable."""
        path = self._path(seq)
        size = self.sizes[seq]
        if size == 0:
            return
        with open(path, "rb+") as f:
            f.seek(max(0, size - 65536))
            tail = f.read()
            if tail.endswith(b"\n"):
                return
            cut = tail.rfind(b"\n")
            new = size - len(tail) + cut + 1 if cut >= 0 else max(0, size - len(tail))
            f.truncate(new)
            self.sizes[seq] = new

    def close(self) -> None:
        with self.lock:
            self._close_writer(sync=True)
            self._close_reader()
            if self._lockfd is not None:
                os.close(self._lockfd)
                self._lockfd = None

    # -- writing ----------------------------------------------------------------------
    def _path(self, seq: int) -> Path:
        return self.dir / f"{seq}{_SUFFIX}"

    def total_bytes(self) -> int:
        return sum(self.sizes.values())

    def append(self, record: dict) -> None:
        """Add one row at the end (raises OSError / SpoolError when it cannot)."""
        self.append_lines([self.encode(record)])

    def encode_all(self, items: list) -> tuple[list[bytes], Exception | None]:
        """The spool lines of `items`, up to the first that cannot be encoded (and why).

        Why apart from `append_lines`: encoding is most of a spilled item's cost, and
        it touches nothing shared, so the reader does it before taking any lock (the
        writer thread, reading the spool meanwhile, is not held up by it).
        """
        lines: list[bytes] = []
        encode = self.encode
        try:
            for item in items:
                lines.append(encode(item))
        except (ValueError, TypeError) as exc:
            return lines, exc
        return lines, None

    def append_lines(self, lines: list[bytes]) -> None:
        """Add encoded rows at the end, in order.  On OSError / SpoolError (full) the
        exception's `written` says how many of them are in the spool."""
        written = 0
        with self.lock:
            try:
                total = self.total_bytes()
                size = sum(map(len, lines))
                if self._writer is not None and total + size <= self.max_bytes \
                        and self.sizes[self._wseq] + size <= self.segment_bytes:
                    # the common case in a burst: all of it fits, one write (why: a
                    # buffered write per line was a fifth of the reader's time spilling)
                    self._writer.write(b"".join(lines))
                    self.sizes[self._wseq] += size
                    written = len(lines)
                    return
                for line in lines:
                    if total + len(line) > self.max_bytes:
                        raise SpoolError(f"spool {self.dir} is full ({self.max_bytes} bytes)")
                    if self._writer is None or self.sizes[self._wseq] >= self.segment_bytes:
                        self._roll()
                    self._writer.write(line)
                    self.sizes[self._wseq] += len(line)
                    total += len(line)
                    written += 1
            except OSError as exc:
                exc.written = written  # type: ignore[attr-defined]
                raise
            finally:
                self.rows_on_disk += written

    def _roll(self) -> None:
        self._close_writer(sync=False)
        seq = max(self.sizes, default=FIRST_SEQ - 1) + 1
        self._writer = open(self._path(seq), "ab")
        self._wseq = seq
        self.sizes[seq] = 0
        if self._rseq is None:
            self._rseq, self._roff = seq, 0

    def _close_writer(self, sync: bool) -> None:
        if self._writer is not None:
            self._writer.flush()
            if sync:
                os.fsync(self._writer.fileno())
            self._writer.close()
            self._writer = None
            self._wseq = None

    def flush(self, sync: bool = False) -> None:
        with self.lock:
            if self._writer is not None:
                self._writer.flush()
                if sync:
                    os.fsync(self._writer.fileno())

    def prepend(self, records: list[dict]) -> None:
        """Write `records` as a segment read before every other one, durably."""
        if not records:
            return
        data = b"".join(self.encode(r) for r in records)
        with self.lock:
            seq = min(self.sizes, default=FIRST_SEQ) - 1
            path = self._path(seq)
            with open(path, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            self.sizes[seq] = len(data)
            self.rows_on_disk += len(records)
            self._reset_read()

    # -- reading ----------------------------------------------------------------------
    def _reset_read(self) -> None:
        self._close_reader()
        first = min(self.sizes, default=None)
        self._rseq = first
        self._roff = self.starts.get(first, 0) if first is not None else 0
        self._ends = []
        self._read_end = None

    def _close_reader(self) -> None:
        if self._rfile is not None:
            self._rfile.close()
            self._rfile = None
            self._rfile_seq = None

    def _next_seq(self, seq: int) -> int | None:
        later = [s for s in self.sizes if s > seq]
        return min(later) if later else None

    def read(self, max_rows: int) -> list[dict]:
        """Up to `max_rows` rows after the read position (which moves past them)."""
        return self.decode_lines(self.read_lines(max_rows))

    def read_lines(self, max_rows: int) -> list[bytes]:
        """`read`'s first half: the next lines as stored, without their newline, not
        decoded (cheap, so that a caller holding another lock holds it briefly;
        `decode_lines` then does the rest after that lock is released, in the same
        thread, before `commit` or `rewind`).

        Read in blocks of `READ_BYTES` and split in C (why: a seek and a readline per
        line cost about 2 us of the writer's time for each spooled row of a burst)."""
        lines: list[bytes] = []
        with self.lock:
            if self._writer is not None:
                self._writer.flush()
            self._ends = []
            while len(lines) < max_rows and self._rseq is not None:
                seq = self._rseq
                if self._rfile_seq != seq:
                    self._close_reader()
                    self._rfile = open(self._path(seq), "rb")
                    self._rfile_seq = seq
                self._rfile.seek(self._roff)
                # (a block for the rows still wanted: a small read reads little)
                block = min(READ_BYTES, (max_rows - len(lines)) * LINE_GUESS)
                data = self._rfile.read(block)
                cut = data.rfind(b"\n") + 1
                if not cut and len(data) == block:  # one line longer than the block
                    data += self._rfile.readline()
                    cut = len(data) if data.endswith(b"\n") else 0
                if not cut:  # the segment's end (or a partial line): the next one, if any
                    nxt = self._next_seq(seq)
                    if nxt is None:
                        break
                    self._rseq, self._roff = nxt, self.starts.get(nxt, 0)
                    continue
                got = data[:cut].split(b"\n")
                got.pop()  # the empty piece after the last newline
                del got[max_rows - len(lines):]
                # each line's end: its start, the lengths so far, one newline each
                ends = list(map(add, accumulate(map(len, got)), count(self._roff + 1)))
                lines += got
                self._ends += zip(repeat(seq), ends)
                self._roff = ends[-1]
            self._read_end = (self._rseq, self._roff) if self._rseq is not None else None
        return lines

    def decode_lines(self, lines: list[bytes]) -> list[Any]:
        """The rows of the lines `read_lines` gave; a line that does not decode is
        counted `corrupt` and skipped (`commit` counts only the rows returned)."""
        rows: list[Any] = []
        bad: list[int] = []
        decode = self.decode
        for i, line in enumerate(lines):
            try:
                rows.append(decode(line))
            except (orjson.JSONDecodeError, ValueError, TypeError, IndexError,
                    AttributeError):
                bad.append(i)
        if bad:
            skip = set(bad)
            with self.lock:
                self.corrupt += len(bad)
                self._ends = [end for i, end in enumerate(self._ends) if i not in skip]
        return rows

    def commit(self, count: int) -> None:
        """The first `count` rows of the last `read` reached the destination."""
        with self.lock:
            if count <= 0:
                return
            pos = self._read_end if count >= len(self._ends) else self._ends[count - 1]
            if pos is None:
                return
            seq, off = pos
            for old in [s for s in self.sizes if s < seq]:
                self._drop_segment(old)
            self.starts[seq] = off
            self._write_pos(seq, off)
            self.rows_on_disk = max(0, self.rows_on_disk - count)
            if count < len(self._ends):
                self._rseq, self._roff = seq, off
            self._ends = self._ends[count:]

    def rewind(self) -> None:
        """Give back everything read but not committed."""
        with self.lock:
            self._reset_read()

    def _write_pos(self, seq: int, off: int) -> None:
        tmp = self.dir / f"{seq}.pos.tmp"
        tmp.write_text(str(off))
        os.replace(tmp, self.dir / f"{seq}.pos")

    def _drop_segment(self, seq: int) -> None:
        if self._rfile_seq == seq:
            self._close_reader()
        if self._wseq == seq:
            self._close_writer(sync=False)
        self._path(seq).unlink(missing_ok=True)
        (self.dir / f"{seq}.pos").unlink(missing_ok=True)
        self.sizes.pop(seq, None)
        self.starts.pop(seq, None)

    def has_unread(self) -> bool:
        """Rows after the read position (the caller has nothing in flight)."""
        with self.lock:
            if self._rseq is None:
                return False
            for seq in sorted(s for s in self.sizes if s >= self._rseq):
                start = self._roff if seq == self._rseq else self.starts.get(seq, 0)
                if self.sizes[seq] > start:
                    return True
            return False

    def clear(self) -> None:
        """Everything was consumed: delete the segments (a later spill starts afresh)."""
        with self.lock:
            for seq in list(self.sizes):
                self._drop_segment(seq)
            self.rows_on_disk = 0
            self._reset_read()
