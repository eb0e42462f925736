"""PCAP, live: ulogd 2.0.8 and ulogpy write capture files of the same NFLOG packets.

One namespace; every packet on its loopback (ICMP and ICMPv6 echo, TCP and
UDP exchanges over IPv4 and IPv6) is logged by one nft rule to two groups,
one read by ulogd, one by ulogpy, each with `NFLOG,BASE,PCAP`.

The files must have the same global header and, packet by packet, the
same captured and original lengths and bytes; the time stamps are each
daemon's reception time (the kernel stamps none of these packets), so they
may differ by `CLOCK_TOLERANCE_S`.  `tcpdump -r` must print the same
packets for both.  Both daemons are restarted and then given SIGHUP after
the file was moved away (logrotate): the restarted daemon appends with no
second header, the reopened file starts with one.

Then ulogpy alone writes into a 16 KiB tmpfs (a private mount namespace of
its own): the disk fills, the failure is logged with ulogd's words and
counted, the daemon goes on, and the file stays a capture file a reader
takes to its end (no torn record).
"""

from __future__ import annotations

import re
import signal
import struct
import subprocess
import time
from pathlib import Path

import pytest

from tests.compare import CLOCK_TOLERANCE_S
from tests.netns import Netns, icmp_echo, tcp_echo, udp_echo, wait_until
from tests.ulogd_ref import ULOGD_BIN, ULOGPY, UlogdProcess, wait_for_text

pytestmark = [pytest.mark.live, pytest.mark.ulogd]

GROUPS = {"ulogd": 51, "ulogpy": 52}
CONF = """\
[global]
loglevel=3
stack=log1:NFLOG,base1:BASE,pcap1:PCAP
[log1]
group={group}
[pcap1]
file="{file}"
sync=1
"""
RULES = """
table inet ulogpy_pcap {
    chain out {
        type filter hook output priority filter; policy accept;
        meta l4proto { tcp, udp, icmp, ipv6-icmp } log group 51 log group 52
    }
}
"""
#: nfnetlink_log sends a group's queued packets at least this often (kernel default 1 s).
FLUSH_TIMEOUT_S = 1.5
_GLOBAL = struct.Struct("=IHHiIII")
_RECORD = struct.Struct("=IIII")


def read_pcap(path: Path) -> tuple[tuple, list[tuple[float, int, int, bytes]]]:
    """(global header fields, [(time, caplen, length, bytes)]); asserts nothing is torn."""
    data = path.read_bytes()
    header = _GLOBAL.unpack_from(data, 0)
    pos = _GLOBAL.size
    records = []
    while pos < len(data):
        assert pos + _RECORD.size <= len(data), f"{path}: torn record header at {pos}"
        sec, usec, caplen, length = _RECORD.unpack_from(data, pos)
        pos += _RECORD.size
        assert pos + caplen <= len(data), f"{path}: torn packet at {pos}"
        records.append((sec + usec / 1e6, caplen, length, data[pos:pos + caplen]))
        pos += caplen
    return header, records


def tcpdump(path: Path, verbose: bool = True) -> list[str]:
    """What `tcpdump -r` prints (with -v, every header field of every packet)."""
    r = subprocess.run(["tcpdump", "-r", str(path), "-n", "-t", *(["-v"] if verbose else [])],
                       capture_output=True,
                       text=True, timeout=30, check=False)
    assert r.returncode == 0, r.stderr
    assert "truncated" not in r.stderr, r.stderr
    return r.stdout.splitlines()


def traffic(ns: Netns) -> None:
    for addr in ("127.0.0.1", "::1"):
        icmp_echo(ns, addr)
        tcp_echo(ns, ns, addr)
        udp_echo(ns, ns, addr)


def compare(ours: Path, theirs: Path, at_least: int) -> int:
    our_header, our_records = read_pcap(ours)
    their_header, their_records = read_pcap(theirs)
    assert our_header == their_header
    assert our_header[0] == 0xA1B2C3D4 and our_header[-2:] == (65536, 101)
    assert len(our_records) == len(their_records) >= at_least
    for i, (mine, ref) in enumerate(zip(our_records, their_records, strict=True)):
        assert mine[1:] == ref[1:], f"packet {i} differs"
        assert abs(mine[0] - ref[0]) <= CLOCK_TOLERANCE_S, f"packet {i}: time {mine[0]} {ref[0]}"
    assert tcpdump(ours) == tcpdump(theirs)
    return len(our_records)


def _settled(files: list[Path]) -> None:
    """Wait until both files have the same size three times in a row (the same packets),
    past the kernel's flush timeout for a group's queued packets (1 s by default)."""
    time.sleep(FLUSH_TIMEOUT_S)
    history: list[tuple[int, ...]] = []

    def same() -> bool:
        history.append(tuple(f.stat().st_size if f.exists() else 0 for f in files))
        last = history[-3:]
        return len(last) == 3 and len(set(last)) == 1 and len(set(last[0])) == 1 \
            and last[0][0] > 24

    wait_until(same, timeout=15, interval=0.3, what="both capture files written alike")


def test_pcap_like_ulogd_with_restart_and_reopen(tmp_path: Path) -> None:
    with Netns("pcap") as ns:
        ns.nft(RULES)
        dirs = {name: tmp_path / name for name in GROUPS}
        files = {name: d / "x.pcap" for name, d in dirs.items()}

        def daemons(run: int) -> tuple[UlogdProcess, UlogdProcess]:
            """Both daemons, with a fresh own log each run (start-up is read from it)."""
            made = []
            for name, group in GROUPS.items():
                dirs[name].mkdir(exist_ok=True)
                made.append(UlogdProcess(ns, CONF.format(group=group, file=files[name]),
                                         dirs[name] / f"run{run}",
                                         binary=ULOGPY if name == "ulogpy" else ULOGD_BIN))
            return made[0], made[1]

        ulogd, ulogpy = daemons(1)
        with ulogd, ulogpy:
            traffic(ns)
            _settled(list(files.values()))
            assert ulogpy.stop() == 0
        first = compare(files["ulogpy"], files["ulogd"], 20)

        # A restart appends, without a second header.
        ulogd, ulogpy = daemons(2)
        with ulogd, ulogpy:
            traffic(ns)
            _settled(list(files.values()))
            second = compare(files["ulogpy"], files["ulogd"], first + 20)
            # SIGHUP after logrotate moved the file: a new file with its own header.
            for name, proc in (("ulogd", ulogd), ("ulogpy", ulogpy)):
                files[name].rename(files[name].with_suffix(".1"))
                proc.send_signal(signal.SIGHUP)
            wait_for_text(ulogpy.logfile, "reopening capture file")
            wait_for_text(ulogd.logfile, "reopening capture file")
            traffic(ns)
            _settled(list(files.values()))
            assert ulogpy.stop() == 0
        assert compare(files["ulogpy"], files["ulogd"], 20) < second
        assert compare(files["ulogpy"].with_suffix(".1"), files["ulogd"].with_suffix(".1"),
                       second) == second
        assert "Traceback" not in ulogpy.log_text()


FULL_CONF = """\
[global]
loglevel=3
stack=log1:NFLOG,base1:BASE,pcap1:PCAP
[log1]
group=52
[pcap1]
file="{file}"
sync=1
queue_size=50
"""
#: Run a command with a 16 KiB tmpfs on `dir` that only it sees.
SMALL_DISK = """#!/bin/sh
exec unshare -m --propagation private sh -c \
  'mount -t tmpfs -o size=16k,mode=0755 ulogpy-test "$0" && exec "$@"' {dir} {ulogpy} "$@"
"""


def test_full_disk_is_counted_and_the_file_stays_whole(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    wrapper = tmp_path / "small-disk.sh"
    wrapper.write_text(SMALL_DISK.format(dir=disk, ulogpy=ULOGPY))
    wrapper.chmod(0o755)
    with Netns("pcapfull") as ns:
        ns.nft(RULES)
        daemon = UlogdProcess(ns, FULL_CONF.format(file=disk / "x.pcap"), tmp_path / "run",
                              binary=wrapper)
        with daemon:
            private = Path(f"/proc/{daemon.pid}/root") / str(disk).lstrip("/") / "x.pcap"
            for _ in range(40):  # ~100 packets of 50-90 bytes a round: 16 KiB fill at once
                traffic(ns)
                if "No space left on device" in daemon.log_text():
                    break
            wait_for_text(daemon.logfile, "Error during write: No space left on device")
            time.sleep(1.0)
            assert daemon.running()
            copy = tmp_path / "copy.pcap"
            copy.write_bytes(private.read_bytes())
            assert daemon.stop() == 0
        header, records = read_pcap(copy)  # whole records only, to the last byte
        assert header[-1] == 101 and len(records) > 50
        assert len(tcpdump(copy, verbose=False)) == len(records)
        log = daemon.log_text()
        counters = re.search(r"counters pcap1:PCAP: (.*)", log)
        assert counters, log
        values = dict(kv.split("=") for kv in counters.group(1).split())
        assert int(values["write_errors"]) >= 1
        assert int(values["dropped"]) > 0  # queue_size=50: the rest dropped, counted
        assert int(values["written"]) == len(records)
        assert "Traceback" not in log
