"""The daemon's guard around an input's `receive`: count, log rate-limited, go on."""

from __future__ import annotations

import logging
import socket
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest
from ulogpy.plugins.input.nflog import NFLOG
from ulogpy.plugins.input.unixsock import MARKER, UNIXSOCK

from tests.fixtures.recorded import load_records
from tests.readers import Readers
from ulogpy.config.model import options_model
from ulogpy.core.plugin import InputPlugin
from ulogpy.daemon import guard
from ulogpy.daemon.guard import LOGGED_IN_FULL, FailureLog, guard_input

NFLOG_FIX = Path(__file__).resolve().parent.parent / "fixtures" / "nflog"


class Picky(InputPlugin):
    """An input whose handler fails on some datagrams (a decoder bug, say)."""

    name = "PICKY"

    def __init__(self) -> None:
        super().__init__("picky1", None)
        self.got: list[bytes] = []

    def receive(self, data: bytes) -> None:
        if data.startswith(b"bad"):
            raise ValueError(f"cannot read {data!r}")
        self.got.append(data)


def test_a_failing_datagram_is_counted_and_the_next_one_read() -> None:
    inp = Picky()
    assert guard_input(inp)
    for data in (b"one", b"bad1", b"two", b"bad2", b"three"):
        inp.receive(data)
    assert inp.got == [b"one", b"two", b"three"]
    assert inp.counters.get("failed") == 2


def test_guarding_twice_wraps_once_and_inputs_without_receive_are_left_alone() -> None:
    inp = Picky()
    guard_input(inp)
    first = inp.receive
    assert guard_input(inp) and inp.receive is first
    plain = InputPlugin("plain1", None)
    assert not guard_input(plain) and not hasattr(plain, "receive")


def test_first_failures_are_logged_in_full_then_summed_up(caplog) -> None:
    inp = Picky()
    guard_input(inp, log_every=0.0)  # every failure past the first ones gets a line
    with caplog.at_level(logging.ERROR, logger="ulogpy.guard"):
        for i in range(LOGGED_IN_FULL + 2):
            inp.receive(b"bad%d" % i)
    full, summaries = caplog.records[:LOGGED_IN_FULL], caplog.records[LOGGED_IN_FULL:]
    assert all("picky1:PICKY" in r.getMessage() and r.exc_info for r in full)
    assert "cannot read b'bad0'" in full[0].getMessage()
    assert "further failures are counted" in full[-1].getMessage()
    assert [("1 more datagrams failed" in r.getMessage(), r.exc_info) for r in summaries] == \
        [(True, None), (True, None)]
    assert inp.counters.get("failed") == LOGGED_IN_FULL + 2


def test_summary_lines_come_at_most_once_per_interval(caplog) -> None:
    now = [100.0]
    failures = FailureLog("x1:X", log_every=60.0, clock=lambda: now[0])
    with caplog.at_level(logging.ERROR, logger="ulogpy.guard"):
        for _ in range(LOGGED_IN_FULL):
            failures.failed(ValueError("v"), 10)
        caplog.clear()
        for step in range(120):  # one failure a second for two minutes
            now[0] += 1.0
            failures.failed(ValueError(f"v{step}"), 10)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("x1:X: 60 more datagrams failed") and "v59" in lines[0]
    assert lines[1].startswith("x1:X: 60 more datagrams failed") and "v119" in lines[1]


class Socket:
    """A non-blocking socket's `recv`: the given datagrams, then EAGAIN."""

    def __init__(self, datagrams: list[bytes]) -> None:
        self.datagrams = list(datagrams)

    def recv(self, size: int) -> bytes:
        if not self.datagrams:
            raise BlockingIOError
        return self.datagrams.pop(0)


def test_the_read_loop_goes_on_after_a_datagram_that_fails() -> None:
    """NFLOG's own read loop (`NetlinkInput.on_readable`) calls the guarded `receive`:
    the datagram whose handling raises is skipped, the batch goes on."""
    datagrams = [r["data"] for r in load_records(NFLOG_FIX) if r["group"] == 11]
    assert len(datagrams) == 2
    cfg = {o.name: o.default for o in NFLOG.options}
    inp = NFLOG("log1", SimpleNamespace(**{**cfg, "group": 11}))
    inp.configure()
    got: list[dict] = []

    def emit(record: dict) -> None:  # a stack that fails on one packet
        if record.get("oob.seq.global") == 2:
            raise RuntimeError("stack bug")
        got.append(record)

    inp.emit = emit
    guard_input(inp)
    inp.sock = Socket([datagrams[0], datagrams[1]])
    inp.on_readable()
    # The first datagram (packets 0, 1, 2) stopped at its second packet; the next was read.
    assert [r["oob.seq.global"] for r in got] == [1, 4, 5]
    assert inp.counters.get("failed") == 1
    # The packet after the failing one was never handled: the numbers tell it as lost.
    assert inp.next_seq == 5 and inp.counters.get("lost") == 1


def test_unguarded_the_exception_would_end_the_loop() -> None:
    inp = Picky()
    with pytest.raises(ValueError):
        inp.receive(b"bad")
    assert guard.guard_input(inp)


def nufw_frame(prefix: bytes) -> bytes:
    """A frame as NuFW sends it: an IPv4 header, then option 1 (the prefix)."""
    pkt = bytes.fromhex("4510002830394000400600000a0000010a000001") + bytes(20)
    value = prefix + b"\0"
    option = struct.pack("!II", 1, len(value)) + value + bytes(-len(value) % 8)
    body = struct.pack("!IH", 0, len(pkt)) + pkt + option
    return struct.pack("!IH", MARKER, 2 + len(body)) + body


def test_unixsock_guard_skips_one_frame_and_the_stream_stays_in_step(tmp_path: Path) -> None:
    inp = UNIXSOCK("us1", options_model(UNIXSOCK)(socket_path=str(tmp_path / "u.sock")))
    inp.configure()
    got: list[str] = []

    def emit(record: dict) -> None:
        if record["oob.prefix"] == "bad":
            raise RuntimeError("stack bug")
        got.append(record["oob.prefix"])

    inp.emit = emit
    guard_input(inp)
    loop = Readers()
    inp.start(loop)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(tmp_path / "u.sock"))
            loop.run_once()  # accepted
            stream = nufw_frame(b"one") + nufw_frame(b"bad") + nufw_frame(b"two")
            client.sendall(stream[:-7])
            loop.run_once()
            client.sendall(stream[-7:])
            loop.run_once()
            assert got == ["one", "two"]
            assert inp.counters.get("failed") == 1 and inp.counters.get("frames") == 3
            assert inp.client is not None and inp.counters.get("bad_streams") == 0
    finally:
        inp.stop()
