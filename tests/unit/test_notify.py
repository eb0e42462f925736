"""The sd_notify client: addresses, the watchdog's environment, real datagrams."""

from __future__ import annotations

import logging
import os
import secrets
import socket
from pathlib import Path

import pytest

from ulogpy.config.load import load_config
from ulogpy.core.stack import build_pipeline
from ulogpy.daemon.loop import Loop
from ulogpy.daemon.notify import Notifier, socket_address, status_line, watchdog_interval
from ulogpy.daemon.runner import Runner


@pytest.mark.parametrize(("value", "address"), [
    ("/run/systemd/notify", "/run/systemd/notify"),
    ("@ulogpy/x", b"\0ulogpy/x"),
    ("vsock:2:1234", None),
    ("", None),
])
def test_socket_address(value: str, address: object) -> None:
    assert socket_address(value) == address


def test_watchdog_interval_follows_sd_watchdog_enabled() -> None:
    me = os.getpid()
    assert watchdog_interval({"WATCHDOG_USEC": "2500000"}, me) == 2.5
    assert watchdog_interval({"WATCHDOG_USEC": "2500000", "WATCHDOG_PID": str(me)}, me) == 2.5
    assert watchdog_interval({"WATCHDOG_USEC": "2500000", "WATCHDOG_PID": "1"}, me) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, me) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}, me) is None
    assert watchdog_interval({}, me) is None


def _receiver(address: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    return sock


def test_one_datagram_per_notification_path_and_abstract(tmp_path: Path) -> None:
    name = f"ulogpy-unit-{secrets.token_hex(4)}"
    for env_value, bind in ((str(tmp_path / "n"), str(tmp_path / "n")),
                            (f"@{name}", b"\0" + name.encode())):
        receiver = _receiver(bind)
        notifier = Notifier({"NOTIFY_SOCKET": env_value})
        try:
            assert notifier.send(READY=1, STATUS="3 events, 0 lost, 0 queued")
            assert receiver.recv(4096) == b"READY=1\nSTATUS=3 events, 0 lost, 0 queued\n"
            assert notifier.send(WATCHDOG=1)
            assert receiver.recv(4096) == b"WATCHDOG=1\n"
        finally:
            notifier.close()
            receiver.close()


def test_without_a_service_manager_nothing_is_sent() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.send(READY=1) is False
    assert notifier._sock is None


def test_a_vanished_manager_is_logged_once_never_raised(tmp_path: Path, caplog) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    with caplog.at_level(logging.WARNING, logger="ulogpy.notify"):
        assert notifier.send(READY=1) is False
        assert notifier.send(WATCHDOG=1) is False
    assert len(caplog.records) == 1 and "gone" in caplog.records[0].getMessage()
    notifier.close()


def test_status_line_counts_events_losses_and_queue(tmp_path: Path) -> None:
    conf = tmp_path / "c.conf"
    conf.write_text("[global]\nstack=ct1:NFCT,ip2str1:IP2STR,j1:JSON\n[ct1]\n"
                    f'[j1]\nfile="{tmp_path}/j.json"\n')
    pipeline = build_pipeline(load_config(str(conf)))
    loop = Loop()
    try:
        runner = Runner(pipeline, loop)
        assert status_line(pipeline, runner) == "0 events, 0 lost, 0 queued"
        ct = pipeline.inputs[0]
        for record in ({"n": 1}, {"n": 2}, {"n": 3}):
            ct.emit(record)  # the real chain: IP2STR, then JSON's buffer
        runner.after_batch()
        ct.counters.add("overruns", 2)
        (out,) = pipeline.outputs
        out.counters.add("dropped")
        line = status_line(pipeline, runner)
        assert line.startswith("3 events, 3 lost, ")
        assert line.endswith(f" {runner.depth()} queued") and runner.depth() >= 1
    finally:
        loop.close()
