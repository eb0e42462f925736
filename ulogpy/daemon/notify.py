"""systemd's service notification protocol (`sd_notify`), for `Type=notify`.

The protocol is one datagram of `KEY=value` lines to the unix socket named in
`$NOTIFY_SOCKET` (a path, or an abstract name written with a leading `@`).
A dozen lines of socket code do it, so ulogpy takes no dependency on
libsystemd or a binding for it, and runs unchanged where systemd is absent
(no `$NOTIFY_SOCKET`: every call does nothing).

The watchdog follows `sd_watchdog_enabled`: `$WATCHDOG_USEC` is the interval
systemd expects pings within, and `$WATCHDOG_PID`, when set, must be our pid.
The pings come from a timer of the main loop itself (see `Service`), so a
wedged loop stops them and systemd restarts the daemon.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger("ulogpy.notify")
#: Seconds between STATUS= refreshes.
STATUS_INTERVAL = 2.0


def socket_address(value: str) -> str | bytes | None:
    """The address `$NOTIFY_SOCKET` names: a path, or an abstract name (`@` → NUL)."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # systemd also knows vsock: addresses; a local daemon never gets one


def watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds within which systemd wants a WATCHDOG=1, or None when it wants none."""
    owner = env.get("WATCHDOG_PID")
    if owner and owner != str(pid):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1e6 if usec > 0 else None


class Notifier:
    """Sends notifications to the service manager; silent without one."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address = socket_address(env.get("NOTIFY_SOCKET", ""))
        self._sock: socket.socket | None = None
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: object) -> bool:
        """One datagram with `KEY=value` per field; a failure is logged once, never raised."""
        if self.address is None:
            return False
        message = "".join(f"{key}={value}\n" for key, value in fields.items()).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message, self.address)
        except OSError as exc:
            if not self._failed:
                log.warning("cannot notify the service manager at %r: %s",
                            self.address, exc.strerror)
            self._failed = True
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def status_line(pipeline, runner) -> str:
    """One line for `systemctl status`: events read, items lost, items queued."""
    events = sum(inp.counters.get("emitted") for inp in pipeline.inputs)
    lost = 0
    for inst in pipeline.instances():
        lost += sum(n for key, n in inst.counters.snapshot().items()
                    if inst.counters.is_loss(key))
    return f"{events} events, {lost} lost, {runner.depth()} queued"


class Service:
    """The daemon's side of `Type=notify`: READY, STATUS, WATCHDOG, STOPPING."""

    def __init__(self, notifier: Notifier, status: Callable[[], str],
                 env: Mapping[str, str] | None = None) -> None:
        self.notifier = notifier
        self.status = status
        env = os.environ if env is None else env
        self.watchdog = watchdog_interval(env, os.getpid()) if notifier.enabled else None

    def ready(self, loop, daemonized: bool = False) -> None:
        """Everything is bound and open: say so, then keep STATUS and the watchdog going."""
        if not self.notifier.enabled:
            return
        extra = {"MAINPID": os.getpid()} if daemonized else {}
        self.notifier.send(READY=1, STATUS=self._status(), **extra)
        loop.call_every(STATUS_INTERVAL, lambda: self.notifier.send(STATUS=self._status()))
        if self.watchdog is not None:
            # half the interval, as systemd advises; a timer, so only a running loop pings
            loop.call_every(self.watchdog / 2, lambda: self.notifier.send(WATCHDOG=1))
            self.notifier.send(WATCHDOG=1)

    def stopping(self) -> None:
        self.notifier.send(STOPPING=1, STATUS="stopping: writing what is queued")

    def _status(self) -> str:
        try:
            return self.status().replace("\n", " ")
        except Exception as exc:  # a status line must never cost a notification
            return f"running (status unavailable: {exc!r})"
