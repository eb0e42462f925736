"""JSON's tcp/udp/unix modes: the socket transport and the delivery model's loop writer,
on unix stream sockets and the real loop.

What ulogd does differently (spec 4.13, O3) is what these tests pin down:
the daemon never waits for the peer, a peer that is not there yet is not
fatal, a stalled peer costs dropped records (counted) instead of a stalled
daemon, partial writes are resumed, and every line the peer receives is
whole and in order, across reconnects.  IP modes run in namespaces, in
tests/live/test_json_socket.py.
"""

from __future__ import annotations

import logging
import re
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.outputs import Delivered
from ulogpy.config.errors import ConfigError
from ulogpy.config.load import load_config
from ulogpy.core.stack import build_pipeline
from ulogpy.daemon.loop import Loop
from ulogpy.transports.sockets import check_unix_path


class Peer:
    """A unix stream listener the test drives by hand: accept, read, close, or stall."""

    def __init__(self, path: Path, backlog: int = 4) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(backlog)
        self.listener.setblocking(False)
        self.conns: list[socket.socket] = []
        self.data: list[bytearray] = []  # bytes received, per connection

    def pump(self, read: bool = True) -> None:
        """Accept what is waiting and (if `read`) read what is there, without blocking."""
        while True:
            try:
                conn, _ = self.listener.accept()
            except BlockingIOError:
                break
            conn.setblocking(False)
            self.conns.append(conn)
            self.data.append(bytearray())
        if not read:
            return
        for conn, buf in zip(self.conns, self.data, strict=True):
            if conn.fileno() < 0:
                continue
            while True:
                try:
                    chunk = conn.recv(1 << 20)
                except BlockingIOError:
                    break
                if not chunk:
                    break
                buf += chunk

    @property
    def received(self) -> bytes:
        return b"".join(self.data)

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        self.listener.close()


def record(i: int, size: int = 100) -> bytes:
    """A JSON-like line with a sequence number, padded to about `size` bytes."""
    head = f'{{"seq": {i}, "pad": "'.encode()
    return head + b"x" * max(0, size - len(head) - 3) + b'"}\n'


def run_until(loop: Loop, pred, timeout: float = 5.0) -> None:
    """Run the loop until `pred()` holds (checked every 10 ms), or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    outcome: list[bool] = []

    def check() -> None:
        if pred():
            outcome.append(True)
            loop.stop()
        elif time.monotonic() > deadline:
            outcome.append(False)
            loop.stop()
        else:
            loop.call_later(0.01, check)

    loop.call_later(0, check)
    loop.run()
    assert outcome == [True], f"condition not reached within {timeout}s"


@pytest.fixture
def loop():
    lp = Loop()
    yield lp
    lp.close()


class Sink:
    """A JSON output in mode unix with its real buffer and loop writer; the test hands it
    lines (as the runner does after rendering) and drives the loop."""

    def __init__(self, tmp: Path, path: Path, queue_max: int, loop: Loop) -> None:
        conf = tmp / f"{path.name}.conf"
        conf.write_text(f'[global]\nstack=ct1:NFCT,ip2str1:IP2STR,j1:JSON\n[ct1]\n[j1]\n'
                        f'mode="unix"\nfile="{path}"\nqueue_size={queue_max}\n')
        self.out = Delivered(build_pipeline(load_config(str(conf))).stacks[0].output, loop)
        self.writer = self.out.writer

    def start(self) -> None:
        self.out.start()

    def send(self, line: bytes) -> None:
        self.writer.buffer.put(line.decode())

    def flush(self) -> None:
        self.out.flush()

    def queued(self) -> int:
        return self.writer.buffer.depth()

    def reconnect(self) -> None:
        self.out.signal(signal.SIGHUP)

    def close(self) -> None:
        self.out.stop()


def make_sink(path: Path, queue_max: int = 1000, loop: Loop | None = None):
    sink = Sink(path.parent, path, queue_max, loop)
    return sink, sink.out.counters


def test_records_arrive_whole_and_in_order(tmp_path: Path, loop: Loop) -> None:
    peer = Peer(tmp_path / "p.sock")
    sink, counters = make_sink(peer.path, loop=loop)
    sink.start()
    records = [record(i, 50 + i % 300) for i in range(500)]
    for rec in records:
        sink.send(rec)
    sink.flush()
    run_until(loop, lambda: (peer.pump(), len(peer.received) == sum(map(len, records)))[1])
    assert peer.received == b"".join(records)
    assert len(peer.conns) == 1
    assert counters.get("written") == 500 and counters.get("dropped") == 0
    sink.close()
    peer.close()


def test_absent_peer_is_not_fatal_and_gets_the_queue_once_it_listens(
    tmp_path: Path, loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "late.sock"
    sink, counters = make_sink(path, loop=loop)
    with caplog.at_level(logging.INFO, logger="ulogpy"):
        sink.start()  # nobody listens: no exception
        for i in range(20):
            sink.send(record(i))
        sink.flush()
        run_until(loop, lambda: counters.get("write_errors") >= 2, timeout=3)
        peer = Peer(path)
        run_until(loop, lambda: (peer.pump(), peer.received.count(b"\n") == 20)[1], timeout=5)
    assert peer.received == b"".join(record(i) for i in range(20))
    warnings = [r for r in caplog.records if "can't connect" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.ERROR  # once per outage
    assert "No such file or directory" in warnings[0].getMessage()
    assert any(re.search(r"unix:\S+ takes records again after [\d.]+ s; 0 waiting",
                         r.getMessage()) for r in caplog.records)
    sink.close()
    peer.close()


def test_stalled_peer_costs_counted_drops_never_a_blocked_loop(
    tmp_path: Path, loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    peer = Peer(tmp_path / "stall.sock")
    sink, counters = make_sink(peer.path, queue_max=100, loop=loop)
    sink.start()
    assert sink.writer.up
    slowest = 0.0
    total = 3000
    with caplog.at_level(logging.INFO, logger="ulogpy"):
        for i in range(total):  # 3 MB: far beyond what the socket buffers hold
            t0 = time.monotonic()
            sink.send(record(i, 1000))
            sink.flush()
            slowest = max(slowest, time.monotonic() - t0)
    assert slowest < 0.05, f"a send took {slowest:.3f}s: the daemon waited for the peer"
    assert counters.get("dropped") > 0
    assert sink.queued() == 100
    drops = [r for r in caplog.records if "dropping records" in r.getMessage()]
    assert len(drops) == 1  # once per episode, not per record
    # the peer wakes up: everything not dropped arrives, whole and in order
    with caplog.at_level(logging.INFO, logger="ulogpy"):
        run_until(loop, lambda: (peer.pump(), not sink.queued())[1], timeout=5)
    lines = peer.received.split(b"\n")
    assert lines[-1] == b""
    seqs = [int(line[8:line.index(b",")]) for line in lines[:-1]]
    assert all(line + b"\n" == record(s, 1000) for line, s in zip(lines, seqs, strict=False))
    # what the socket took before the peer stalled, then the newest 100 (drop-oldest)
    assert len(seqs) + counters.get("dropped") == total
    assert seqs[-100:] == list(range(total - 100, total))
    assert seqs[:-100] == list(range(len(seqs) - 100))
    assert any("takes records again" in r.getMessage() for r in caplog.records)
    sink.close()
    peer.close()


def test_peer_closing_mid_stream_reconnects_and_resends_the_cut_record_whole(
    tmp_path: Path, loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    peer = Peer(tmp_path / "cut.sock")
    sink, counters = make_sink(peer.path, queue_max=10_000, loop=loop)
    sink.start()
    total = 2000
    for i in range(total):
        sink.send(record(i, 1000))
    sink.flush()  # the socket buffer fills, a record is likely cut at its end
    peer.pump(read=False)
    first = peer.conns[0]
    got = first.recv(5000)  # some whole records and a partial one
    first.close()
    with caplog.at_level(logging.INFO, logger="ulogpy"):
        run_until(loop, lambda: (peer.pump(), not sink.queued() and len(peer.conns) == 2)[1],
                  timeout=5)
    second = bytes(peer.data[1])
    assert second.endswith(b"\n")
    lines = second.split(b"\n")[:-1]
    start = int(lines[0][8:lines[0].index(b",")])
    # the new connection starts at a record boundary and carries everything after it
    assert second == b"".join(record(i, 1000) for i in range(start, total))
    assert got.startswith(record(0, 1000))
    assert counters.get("write_errors") == 1
    assert len([r for r in caplog.records if "Failure sending message" in r.getMessage()]) == 1
    assert any(re.search(r"unix:\S+ takes records again after [\d.]+ s; \d+ waiting",
                         r.getMessage()) for r in caplog.records)
    sink.close()
    peer.close()


def test_reconnect_opens_a_new_connection_and_keeps_the_queue(tmp_path: Path, loop: Loop) -> None:
    peer = Peer(tmp_path / "hup.sock")
    sink, _counters = make_sink(peer.path, loop=loop)
    sink.start()
    sink.send(record(1))
    sink.flush()
    run_until(loop, lambda: (peer.pump(), peer.received == record(1))[1])
    sink.send(record(2))
    sink.reconnect()  # SIGHUP: after the records handed over before it
    sink.send(record(3))
    sink.flush()
    run_until(loop, lambda: (peer.pump(), len(peer.conns) == 2 and peer.data[1] == record(3))[1])
    assert peer.data[0] == record(1) + record(2)
    sink.close()
    peer.close()


def test_close_gives_the_peer_the_queue_or_counts_the_loss(
    tmp_path: Path, loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    peer = Peer(tmp_path / "bye.sock")
    sink, counters = make_sink(peer.path, loop=loop)
    sink.start()
    for i in range(5):
        sink.send(record(i))
    sink.close()  # never handed over by the loop: close sends it
    peer.pump()
    assert peer.received == b"".join(record(i) for i in range(5))
    peer.close()

    absent, counters = make_sink(tmp_path / "nobody.sock", loop=loop)
    absent.start()
    absent.send(record(0))
    with caplog.at_level(logging.ERROR, logger="ulogpy"):
        absent.close()
    assert counters.get("dropped") == 1
    assert any("1 records could not be written to unix:" in r.getMessage()
               for r in caplog.records)


def test_unix_path_checks() -> None:
    assert check_unix_path("") == "missing unix socket path"
    assert check_unix_path("/" + "a" * 106) is None  # 107 bytes + NUL fit
    assert "longer than 107" in check_unix_path("/" + "a" * 107)


# -- JSON's socket options, as configuration errors ---------------------------------------


def _json_conf(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "j.conf"
    path.write_text(f"[global]\nstack=ct1:NFCT,ip2str1:IP2STR,j1:JSON\n[ct1]\n[j1]\n{body}")
    return path


@pytest.mark.parametrize(("body", "words"), [
    ('mode="tcpx"\n', ["unknown mode 'tcpx'", "mode", "file, tcp, udp or unix"]),
    ('mode="unix"\nfile=""\n', ["missing unix socket path", "'file'"]),
    (f'mode="UNIX"\nfile="/{"s" * 110}"\n', ["is longer than 107", "'file'"]),
    ('mode="tcp"\nport="no-such-service"\n', ["'port'", "no-such-service"]),
    ('mode="udp"\nport="70000"\n', ["'port'", "70000"]),
    ('mode="tcp"\nqueue_size=0\n', ["queue_size", "greater than 0"]),
    ('mode="unix"\nfile="/run/j.sock"\nqueue_policy="block"\n',
     ["'queue_policy'", "block would stop the event loop", "drop-oldest or spool"]),
])
def test_socket_option_errors(tmp_path: Path, body: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        build_pipeline(load_config(str(_json_conf(tmp_path, body))))
    text = str(err.value)
    for word in words:
        assert word in text, text
    assert "j1" in text


@pytest.mark.parametrize("body", [
    'mode="TCP"\nhost="localhost"\nport="syslog"\n',
    'mode="Udp"\nhost="::1"\nport="514"\n',
    'mode="unix"\nfile="rel/j.sock"\n',
])
def test_socket_options_accepted(tmp_path: Path, body: str) -> None:
    pipe = build_pipeline(load_config(str(_json_conf(tmp_path, body))))
    json1 = pipe.stacks[0].output
    assert json1.transport.nonblocking is True  # written from the loop, no output thread


def test_file_mode_writes_from_a_thread(tmp_path: Path) -> None:
    pipe = build_pipeline(load_config(str(_json_conf(tmp_path, f'file="{tmp_path}/j.json"\n'))))
    assert pipe.stacks[0].output.transport.nonblocking is False
