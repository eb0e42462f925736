"""PCAP on its real buffer, writer and file: header once, record lengths, whole records.

The live comparison with ulogd is tests/live/test_pcap.py; here the cases
the kernel traffic there does not reach: a family other than IPv4/IPv6, a
record without the packet's time, restarts and SIGHUP with the file kept,
an emptied file, and a write cut half-way through a record (by the file
size limit, which fails a write as a full disk does; the full disk itself
is tested live).
"""

from __future__ import annotations

import resource
import signal
import struct
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from ulogpy.plugins.output.pcap import PCAP, PcapSink, as_text, global_header

from tests.netns import wait_until
from tests.outputs import Delivered

_RECORD = struct.Struct("=IIII")


def _pcap(path: Path) -> Delivered:
    cfg = SimpleNamespace(file=str(path), sync=1, queue_size=100, queue_policy="drop-oldest",
                          spool_dir=str(path.parent / "spool"), spool_max_mb=1)
    inst = PCAP("pcap1", cfg)
    inst.configure()
    return Delivered(inst)


def _v4(size: int) -> bytes:
    return bytes([0x45, 0]) + size.to_bytes(2, "big") + bytes(size - 4)


def _records(data: bytes) -> list[tuple[int, int, int, int, bytes]]:
    pos, out = 24, []
    while pos < len(data):
        sec, usec, caplen, length = _RECORD.unpack_from(data, pos)
        out.append((sec, usec, caplen, length, data[pos + 16:pos + 16 + caplen]))
        pos += 16 + caplen
    assert pos == len(data)
    return out


def test_lengths_by_family_and_time_source(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    out = _pcap(path)
    out.start()
    v4 = _v4(60)
    v6 = bytes([0x60]) + bytes(39) + b"\xff" * 8
    arp = b"\x00\x01\x08\x00" + bytes(24)
    out.write({"raw.pkt": v4[:40], "raw.pktlen": 40, "ip.totlen": 60, "oob.family": 2,
               "oob.time.sec": 1700000000, "oob.time.usec": 123456})
    out.write({"raw.pkt": v6, "raw.pktlen": len(v6), "ip6.payloadlen": 8, "oob.family": 10,
               "oob.time.sec": 1700000001, "oob.time.usec": 7})
    before = int(time.time())
    out.write({"raw.pkt": arp, "raw.pktlen": len(arp), "oob.family": 7})  # no time: now
    out.flush()
    wait_until(lambda: out.counters.get("written") == 3, what="3 written")
    out.stop()
    data = path.read_bytes()
    assert data[:24] == global_header()
    recs = _records(data)
    assert recs[0] == (1700000000, 123456, 40, 60, v4[:40])
    assert recs[1] == (1700000001, 7, len(v6), 48, v6)
    assert recs[2][2:] == (len(arp), len(arp), arp)
    assert before <= recs[2][0] <= int(time.time())
    r = subprocess.run(["tcpdump", "-r", str(path), "-n"], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0 and "truncated" not in r.stderr


def test_header_only_for_a_new_or_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    rec = {"raw.pkt": _v4(20), "raw.pktlen": 20, "ip.totlen": 20, "oob.family": 2,
           "oob.time.sec": 1, "oob.time.usec": 2}
    for _run in range(2):  # a restart appends
        out = _pcap(path)
        out.start()
        out.write(rec)
        out.flush()
        wait_until(lambda out=out: out.counters.get("written") == 1, what="written")
        out.signal(signal.SIGHUP)  # reopen, file kept: no header
        out.write(rec)
        out.flush()
        wait_until(lambda out=out: out.counters.get("written") == 2, what="written")
        out.stop()
    assert len(_records(path.read_bytes())) == 4
    path.write_bytes(b"")  # empty: a header again
    out = _pcap(path)
    out.start()
    out.stop()
    assert path.read_bytes() == global_header()


def test_a_failed_write_leaves_whole_records(tmp_path: Path) -> None:
    """A write cut by the file size limit (as by a full disk): the torn record is cut
    away and the error is `Unavailable` with the records written before it."""
    path = tmp_path / "x.pcap"
    sink = PcapSink(str(path))
    sink.open()
    item = as_text(_RECORD.pack(0, 0, 100, 100) + bytes(range(100)))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (24 + 116 * 3 + 50, hard))
    try:
        with pytest.raises(Exception) as caught:
            sink.write([item] * 5)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
        sink.close()
    assert type(caught.value).__name__ == "Unavailable"
    assert caught.value.written == 3
    assert "Error during write: File too large" in str(caught.value)
    assert path.stat().st_size == 24 + 116 * 3
    assert len(_records(path.read_bytes())) == 3
