"""The daemon under a service manager: the sd_notify protocol, against a socket we own.

The test plays systemd's part: it binds the datagram socket `$NOTIFY_SOCKET` names
(a path, or an abstract `@name`), starts the real daemon with it, and reads what
arrives.  READY=1 must mean "bound and open" (flows made right after it are all
logged), STATUS= must count them, STOPPING=1 must come on SIGTERM, and WATCHDOG=1
must come within `$WATCHDOG_USEC` while the main loop runs and stop while it is
wedged.  The wedge is a real one, not a test hook: LOGEMU writes into a FIFO whose
reader stops reading, so the writer blocks, the output's queue (queue_policy=block,
queue_size=5) fills, and the main loop waits for room.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import Netns
from tests.ulogd_ref import ULOGPY
from tests.unit.test_unixsock_frames import frame

pytestmark = pytest.mark.live

STATUS = re.compile(r"^(\d+) events, (\d+) lost, (\d+) queued$")
SEND_FLOWS = (
    "import socket, sys, time\n"
    "for port in range(int(sys.argv[1]), int(sys.argv[2])):\n"
    "    time.sleep(float(sys.argv[3]))\n"
    "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "    s.bind(('127.0.0.1', port))\n"
    "    s.sendto(b'x', ('127.0.0.1', 9))\n"
    "    s.close()\n"
)
F_SETPIPE_SZ = 1031


class NotifySocket:
    """The service manager's end: every datagram, parsed, with the time it came."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, dict[str, str]]] = []

    def poll(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
            self.messages.append((time.monotonic(), fields))

    def wait_for(self, key: str, value: str | None = None, timeout: float = 30.0,
                 since: int = 0, proc: subprocess.Popen | None = None) -> dict[str, str]:
        end = time.monotonic() + timeout
        while True:
            for _, fields in self.messages[since:]:
                if key in fields and (value is None or fields[key] == value):
                    return fields
            if proc is not None and proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"daemon exited with {proc.returncode} before {key}: {err}{out}")
            if time.monotonic() > end:
                pytest.fail(f"no {key}={value or '*'} within {timeout} s: {self.messages}")
            self.poll(0.1)

    def times(self, key: str, since: float = 0.0) -> list[float]:
        return [t for t, fields in self.messages if key in fields and t >= since]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def ns(live_ok) -> Iterator[Netns]:
    with Netns("sdn") as ns:
        ns.nft("table inet t {\n chain out {\n  type filter hook output priority 0;\n"
               "  ct state new counter\n }\n}\n")
        yield ns


@contextlib.contextmanager
def daemon(cmd: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def nfct_conf(tmp: Path, emu: Path, extra: str = "") -> Path:
    conf = tmp / "ulogpy.conf"
    conf.write_text(
        "[global]\n"
        f'logfile="{tmp}/own.log"\n'
        "loglevel=1\n"
        "stack=ct1:NFCT,ip2str1:IP2STR,print1:PRINTFLOW,emu1:LOGEMU\n"
        "[ct1]\nhash_enable=0\nevent_mask=1\n"
        f'[emu1]\nfile="{emu}"\nsync=1\n{extra}'
    )
    return conf


def send_flows(ns: Netns, first: int, count: int, pause: float = 0.0) -> None:
    """UDP flows from source ports first.. to 127.0.0.1:9, `pause` seconds apart."""
    ns.run([sys.executable, "-c", SEND_FLOWS, str(first), str(first + count), str(pause)],
           timeout=60)


def logged_ports(text: str) -> list[int]:
    return [int(p) for p in re.findall(r"SPT=(\d+) DPT=9 ", text)]


def wait_until(pred, timeout: float = 15.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def stop_and_expect_stopping(proc: subprocess.Popen[str], notify: NotifySocket) -> None:
    count = len(notify.messages)
    proc.send_signal(signal.SIGTERM)
    notify.wait_for("STOPPING", "1", since=count)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


# --------------------------------------------------------------------------- tests


def test_ready_only_once_bound_then_status_and_stopping(ns: Netns, tmp_path: Path) -> None:
    emu = tmp_path / "flows.log"
    conf = nfct_conf(tmp_path, emu)
    notify = NotifySocket(str(tmp_path / "notify"))
    try:
        with daemon(["ip", "netns", "exec", ns.name, ULOGPY, "-c", str(conf)],
                    {"NOTIFY_SOCKET": str(tmp_path / "notify")}) as proc:
            ready = notify.wait_for("READY", "1", proc=proc)
            send_flows(ns, 21000, 20)  # at once: nothing may be missed after READY
            assert "initialization finished" in (tmp_path / "own.log").read_text()
            assert STATUS.match(ready["STATUS"]), ready
            assert "WATCHDOG" not in ready and "MAINPID" not in ready
            wait_until(lambda: sorted(logged_ports(emu.read_text() if emu.exists() else ""))
                       == list(range(21000, 21020)), what="all 20 flows logged")
            # the STATUS line is refreshed and counts the events
            since = len(notify.messages)
            deadline = time.monotonic() + 10
            while True:
                notify.poll(0.2)
                counts = [STATUS.match(f["STATUS"]) for _, f in notify.messages[since:]
                          if "STATUS" in f]
                if any(m and int(m[1]) >= 20 for m in counts):
                    break
                assert time.monotonic() < deadline, notify.messages[since:]
            assert not notify.times("WATCHDOG")  # none asked for, none sent
            stop_and_expect_stopping(proc, notify)
    finally:
        notify.close()


def test_abstract_notify_socket_and_unixsock_bound_at_ready(tmp_path: Path) -> None:
    """`@name` addresses work; READY=1 comes after UNIXSOCK's socket listens."""
    path = tmp_path / "in.sock"
    out = tmp_path / "j.json"
    conf = tmp_path / "u.conf"
    conf.write_text(f'[global]\nlogfile="{tmp_path}/own.log"\nstack=us1:UNIXSOCK,j1:JSON\n'
                    f'[us1]\nsocket_path="{path}"\n[j1]\nfile="{out}"\nsync=1\n')
    name = f"@ulogpy-test-{secrets.token_hex(4)}"
    notify = NotifySocket(b"\0" + name[1:].encode())
    try:
        with daemon([ULOGPY, "-c", str(conf)], {"NOTIFY_SOCKET": name}) as proc:
            notify.wait_for("READY", "1", proc=proc)
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.connect(str(path))  # refused if READY came before listen()
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20, 1, 0, 64, 17, 0,
                             bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
            client.sendall(frame(ip))
            wait_until(lambda: out.exists() and '"oob.family": 2' in out.read_text(),
                       what="the frame sent right after READY in the JSON file")
            client.close()
            stop_and_expect_stopping(proc, notify)
    finally:
        notify.close()


class FifoReader:
    """The reading end of a small FIFO: reads while `reading` is set, keeps the text."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        fcntl.fcntl(self.fd, F_SETPIPE_SZ, 4096)
        self.text = ""
        self.reading = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.is_set():
            if not self.reading.wait(0.1):
                continue
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                time.sleep(0.02)
                continue
            self.text += chunk.decode(errors="replace")
            if not chunk:
                time.sleep(0.02)

    def close(self) -> None:
        self.done.set()
        self.thread.join(5)
        os.close(self.fd)


def test_watchdog_pings_from_the_main_loop_and_stop_while_it_is_wedged(
        ns: Netns, tmp_path: Path) -> None:
    usec = 1_000_000
    fifo = tmp_path / "flows.fifo"
    reader = FifoReader(fifo)
    conf = nfct_conf(tmp_path, fifo, "queue_policy=block\nqueue_size=5\n")
    notify = NotifySocket(str(tmp_path / "notify"))
    try:
        with daemon(["ip", "netns", "exec", ns.name, ULOGPY, "-c", str(conf)],
                    {"NOTIFY_SOCKET": str(tmp_path / "notify"),
                     "WATCHDOG_USEC": str(usec)}) as proc:
            notify.wait_for("READY", "1", proc=proc)
            start = time.monotonic()
            notify.poll(3.0)
            pings = notify.times("WATCHDOG", since=start)
            assert len(pings) >= 3, notify.messages  # every half interval: ~6 in 3 s
            gaps = [b - a for a, b in zip([start, *pings], pings, strict=False)]
            assert max(gaps) < usec / 1e6, gaps  # always within the interval systemd wants

            # wedge the loop: nobody reads the FIFO, 100 lines do not fit into 4 KiB; one
            # flow per read batch, so the loop meets the full queue at a hand-over
            send_flows(ns, 22000, 100, pause=0.01)
            wedged_since = None
            deadline = time.monotonic() + 15
            while wedged_since is None:
                assert time.monotonic() < deadline, "the loop never stalled"
                notify.poll(0.2)
                last = max(notify.times("WATCHDOG"))
                if time.monotonic() - last > 3 * usec / 1e6:
                    wedged_since = last
            assert proc.poll() is None  # alive, only its loop is stuck

            # unwedge: the pings come back and no flow was lost
            reader.reading.set()
            resumed = time.monotonic()
            notify.wait_for("WATCHDOG", "1", since=len(notify.messages))
            notify.poll(2.0)
            assert len(notify.times("WATCHDOG", since=resumed)) >= 2
            stop_and_expect_stopping(proc, notify)
    finally:
        notify.close()
        reader.close()
    # every flow is in the FIFO once, or counted as dropped (a whole read batch larger
    # than the queue, met while the writer held the previous one)
    own = (tmp_path / "own.log").read_text()
    emitted = int(re.findall(r"counters ct1:NFCT: .*?\bemitted=(\d+)", own)[-1])
    dropped = re.findall(r"counters emu1:LOGEMU: .*?\bdropped=(\d+)", own)
    ports = logged_ports(reader.text)
    assert emitted == 100
    assert len(ports) == len(set(ports)) and set(ports) <= set(range(22000, 22100))
    assert len(ports) + (int(dropped[-1]) if dropped else 0) == emitted
    assert re.findall(r"counters emu1:LOGEMU: .*?\bblocked_ms=(\d+)", own)


def test_watchdog_for_another_pid_is_not_ours(ns: Netns, tmp_path: Path) -> None:
    """`$WATCHDOG_PID` naming another process (inherited by mistake): no pings."""
    conf = nfct_conf(tmp_path, tmp_path / "flows.log")
    notify = NotifySocket(str(tmp_path / "notify"))
    try:
        with daemon(["ip", "netns", "exec", ns.name, ULOGPY, "-c", str(conf)],
                    {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "400000",
                     "WATCHDOG_PID": "1"}) as proc:
            notify.wait_for("READY", "1", proc=proc)
            notify.poll(1.5)
            assert not notify.times("WATCHDOG")
            stop_and_expect_stopping(proc, notify)
    finally:
        notify.close()
