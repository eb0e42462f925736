"""The reading side the netlink inputs (NFCT, NFLOG) share.

Both read datagrams from a non-blocking netlink socket that the kernel may
overrun, and what that takes is the same for both, so it lives here: the
socket buffer sized from ulogd's options (large by default), one reused
receive buffer, a read loop bounded per wake-up (so the event loop keeps
control for flushes and signals), ENOBUFS counted as an overrun that grows
the buffer up to its maximum, and every other read error counted and
logged, never raised into the loop.  The inputs only decode (`receive`)
and say what to do after an overrun (`after_overrun`).  `receive` is looked
up on the instance for every read batch, so the daemon's guard
(`ulogpy.daemon.guard.guard_input`) can wrap it: an exception out of one
datagram is counted there and the next datagram is read.

`network_namespace_path` (ulogd 2.0.9's option, `NETNS_OPTION`) makes the input
open every socket it uses, and write its sysctls, inside that network namespace
(`ulogpy.transports.netns`): one daemon can log several containers' firewalls,
each stack reading its own namespace, while the sockets are read from the
daemon's one event loop.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable
from typing import ClassVar, TypeVar

from ulogpy.core.plugin import InputPlugin, Option, counters
from ulogpy.daemon.ownlog import NOTICE
from ulogpy.netlink import nlsock
from ulogpy.transports import netns

log = logging.getLogger("ulogpy.nlinput")
#: Datagrams read per wake-up before the loop gets control back.
READS_PER_WAKEUP = 256
T = TypeVar("T")
#: The option both netlink inputs declare (ulogd 2.0.9's; 2.0.8's `-i` lacks it).
NETNS_OPTION = Option(
    "network_namespace_path", str, "", check=netns.check_path, ulogd=False,
    help="open the sockets in the network namespace at this path (/run/netns/NAME, "
         "/proc/PID/ns/net); empty: the daemon's own",
)


class NetlinkInput(InputPlugin):
    """An input reading a netlink socket (`sock`, set by the subclass's `start`)."""

    #: The socket's name in error messages ("ctnetlink", "nfnetlink_log").
    socket_name: ClassVar[str] = "netlink"
    counter_table = counters(
        ("overruns", True, "kernel socket overruns (ENOBUFS): events lost in the kernel"),
        ("recv_errors", True, "failed reads of the socket"),
    )
    sock: socket.socket | None = None
    #: The receive buffer as the kernel reports it (`maxsize`: how far it may grow).
    rcvbuf = 0
    growth_stopped = False
    #: The buffer datagrams are received into (`_receiver`), made on first use.
    _recv_buffer: bytearray | None = None

    def __init__(self, instance_id: str, config) -> None:
        super().__init__(instance_id, config)
        #: The configured maximum; `size_buffer` (at start) may put ulogpy's default.
        self.maxsize = config.netlink_socket_buffer_maxsize

    def in_namespace(self, call: Callable[[], T]) -> T:
        """`call()` inside the configured network namespace (here when there is none).
        An OSError about the namespace itself names its path."""
        path = self.config.network_namespace_path
        return netns.run_in(path, call) if path else call()

    def open_netlink(self, groups: int = 0) -> socket.socket:
        """A netfilter netlink socket bound to `groups`, in the input's namespace."""
        return self.in_namespace(lambda: nlsock.open_socket(groups=groups))

    def recv_size(self) -> int:
        """The largest datagram read at once."""
        return 65536

    def receive(self, data: bytes) -> None:
        """Decode one datagram and emit its events."""
        raise NotImplementedError

    def after_overrun(self) -> None:
        """Called after each overrun has been counted (NFCT schedules its resync)."""

    def size_buffer(self) -> None:
        """Set the socket buffer from the netlink_socket_buffer_* options (ulogpy's large
        default when both are 0), with ulogd's NOTICE."""
        cfg = self.config
        size, self.maxsize = nlsock.default_rcvbuf(cfg.netlink_socket_buffer_size,
                                                   cfg.netlink_socket_buffer_maxsize)
        self.rcvbuf = nlsock.set_rcvbuf(self.sock, size)
        log.log(NOTICE, "%s netlink buffer size has been set to %d", self.name, self.rcvbuf)

    def on_readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        recv = self._receiver(sock)
        receive = self.receive  # the instance's: the guard's wrapper once guarded
        for _ in range(READS_PER_WAKEUP):
            try:
                data = recv()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self._overrun()
                    continue
                self.counters.add("recv_errors")
                log.error("%s: reading the %s socket failed: %s", self.id, self.socket_name,
                          exc)
                return
            receive(data)

    def _receiver(self, sock) -> Callable[[], bytes]:
        """A function returning the next datagram (at most `recv_size` bytes).

        Not ``sock.recv(size)``: that allocates `size` bytes per datagram, and
        NFLOG's default 150000 is above glibc's mmap threshold, so every datagram
        (some 8 KiB, 18 packets, by the kernel's default batching) cost an mmap, page
        faults and a munmap: measured 18.6 µs per recv, 5.1 µs with one reused buffer
        and each datagram copied out at its own size.  (A socket stand-in without
        `recv_into` is read with `recv`.)
        """
        size = self.recv_size()
        recv_into = getattr(sock, "recv_into", None)
        if recv_into is None:
            return lambda: sock.recv(size)
        buf = self._recv_buffer
        if buf is None or len(buf) != size:
            buf = self._recv_buffer = bytearray(size)
        view = memoryview(buf)
        return lambda: view[:recv_into(buf)].tobytes()

    def _overrun(self) -> None:
        """ENOBUFS: the kernel dropped messages for this socket.  Count it and grow the
        buffer (ulogd's NOTICE), until the maximum; then say so once."""
        self.counters.add("overruns")
        if not self.growth_stopped:
            grown = nlsock.grow_rcvbuf(self.sock, self.rcvbuf, self.maxsize)
            if grown is not None:
                self.rcvbuf = grown
                log.log(NOTICE, "%s: we are losing events, increasing buffer size to %d",
                        self.id, grown)
            else:
                self.growth_stopped = True
                if self.maxsize:
                    log.log(NOTICE, "%s: maximum buffer size (%d) reached; consider raising "
                            "netlink_socket_buffer_size and netlink_socket_buffer_maxsize",
                            self.id, self.rcvbuf)
                else:
                    log.log(NOTICE, "%s: we are losing events (socket buffer overrun); "
                            "consider netlink_socket_buffer_size / "
                            "netlink_socket_buffer_maxsize", self.id)
        self.after_overrun()
