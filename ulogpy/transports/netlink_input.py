"""The reading side the netlink inputs (NFCT, NFLOG) share.

Both read datagrams from a non-blocking netlink socket that the kernel may
overrun, and what that takes is the same for both, so it lives here: the
socket buffer sized from ulogd's options (large by default), one reused
receive buffer, datagrams read ahead of their decoding (bounded: in a burst
they wait in this process's memory, not in the kernel's socket buffer where an
overrun loses them), decoding bounded per wake-up (so the event loop keeps
control for flushes and signals), ENOBUFS counted as an overrun that grows
the buffer up to its maximum, and every other read error counted and
logged, never raised into the loop.  What was read ahead is decoded before
NFCT's resync and before the daemon stops (`catch_up`); a crash loses it, as
it loses what the socket buffer holds.  The inputs only decode (`receive`)
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
import os
import socket
from collections import deque
from collections.abc import Callable
from typing import ClassVar, TypeVar

from ulogpy import fastpath
from ulogpy.core.plugin import InputPlugin, Option, counters
from ulogpy.daemon.ownlog import NOTICE
from ulogpy.netlink import nlsock
from ulogpy.transports import netns

log = logging.getLogger("ulogpy.nlinput")
#: Datagrams decoded per wake-up before the loop gets control back.
READS_PER_WAKEUP = 256
#: Datagrams read ahead per wake-up at most, and bytes waiting at most.  Why: reading a
#: datagram costs a fifth of decoding and logging it, so in a burst the reader empties
#: the kernel's socket buffer (where each event takes a socket buffer of about 1 KiB and
#: an overrun loses it) into this process's memory (a few hundred bytes an event) and
#: decodes from there.  Bounded: past these, the socket buffer holds the rest.
READ_AHEAD = 8192
READ_AHEAD_BYTES = 64 << 20
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
    #: Whether a `_continue` is scheduled (datagrams read ahead wait to be decoded).
    _continuing = False

    def __init__(self, instance_id: str, config) -> None:
        super().__init__(instance_id, config)
        #: Datagrams read from the socket, not decoded yet (oldest first), and their bytes.
        self._ahead: deque[bytes] = deque()
        self._ahead_bytes = 0
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
        """Read ahead what the socket holds (bounded), then decode up to
        READS_PER_WAKEUP datagrams of what was read; the rest waits for the next turn."""
        sock = self.sock
        if sock is not None:
            self._read_ahead(sock)
        self._process(READS_PER_WAKEUP)

    def catch_up(self) -> None:
        """Decode everything read ahead and what the socket holds now (NFCT's resync
        first reports what the kernel sent; the daemon does this before it stops)."""
        sock = self.sock
        if sock is not None:
            self._read_ahead(sock)
        self._process(len(self._ahead))

    def _process(self, count: int) -> None:
        ahead = self._ahead
        receive = self.receive  # the instance's: the guard's wrapper once guarded
        popleft = ahead.popleft
        for _ in range(min(count, len(ahead))):
            data = popleft()
            self._ahead_bytes -= len(data)
            receive(data)
        loop = getattr(self, "loop", None)
        if ahead and not self._continuing and loop is not None:
            self._continuing = True  # the socket may be empty: come back without it
            loop.call_later(0, self._continue)

    def _continue(self) -> None:
        self._continuing = False
        self.on_readable()

    def _read_ahead(self, sock: socket.socket) -> None:
        """Move datagrams from the socket into `_ahead`, until it is empty, READ_AHEAD
        datagrams came, or READ_AHEAD_BYTES wait; errors as described above."""
        room = READ_AHEAD
        if fastpath.compiled is not None and type(sock) is socket.socket:
            reads = self._compiled_reads(sock)
        else:
            reads = self._python_reads(sock)
        ahead = self._ahead
        while room > 0 and self._ahead_bytes < READ_AHEAD_BYTES:
            datagrams, err = reads(min(room, READS_PER_WAKEUP))
            room -= len(datagrams)
            ahead.extend(datagrams)
            self._ahead_bytes += sum(map(len, datagrams))
            if not err:
                continue
            if err == errno.ENOBUFS:
                room -= 1
                self._overrun()
                continue
            if err not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                self.counters.add("recv_errors")
                log.error("%s: reading the %s socket failed: %s", self.id, self.socket_name,
                          OSError(err, os.strerror(err)))
            return

    def _compiled_reads(self, sock: socket.socket) -> Callable[[int], tuple[list, int]]:
        """``reads(n) -> (datagrams, errno)`` through the compiled `recv_batch`: the
        datagrams of a batch are read without handing the GIL to the writer threads
        between them (each such hand-over cost a thread switch, and the reader then
        waited for the writer's turn to end)."""
        buf = self._recv_buffer
        size = self.recv_size()
        if buf is None or len(buf) != size:
            buf = self._recv_buffer = bytearray(size)
        recv_batch = fastpath.compiled.recv_batch
        fd = sock.fileno()
        return lambda n: recv_batch(fd, buf, n)

    def _python_reads(self, sock) -> Callable[[int], tuple[list, int]]:
        """The same as `_compiled_reads`, one `recv` call per datagram."""
        recv = self._receiver(sock)

        def reads(n: int) -> tuple[list, int]:
            got = []
            for _ in range(n):
                try:
                    got.append(recv())
                except OSError as exc:
                    return got, exc.errno or errno.EIO
            return got, 0

        return reads

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
