"""A non-blocking record transport for JSON's socket modes (tcp, udp, unix).

ulogd sends each record with a blocking `send()` and, when that fails,
reconnects synchronously; a peer that is slow, gone or unreachable stalls
the whole daemon, and a peer down at start-up kills the stack (spec 4.13,
O3).  Here the daemon never waits for the peer:

* records wait in a bounded in-memory queue; when it is full the oldest
  records make room (as the other outputs' `drop-oldest` queues do), counted
  as `dropped`, with one log line per episode;
* the socket is non-blocking; a partial write is resumed when the loop says
  the socket is writable again, and a record cut by a lost connection is sent
  whole on the next one, so the peer only ever sees complete lines;
* connecting, reconnecting (with exponential backoff) and name resolution
  (in a helper thread, DNS can take seconds) are driven by the loop's timers;
* failures are counted (`connect_failures`, `write_errors`) and logged once
  per outage, and the end of an outage is logged too.

The bytes the peer receives are ulogd's: each record with its newline, in
order; for udp one datagram per record.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from typing import Any

from ulogpy.core.plugin import Counters

log = logging.getLogger("ulogpy.socketsink")

#: First reconnect delay after a failure, doubled per failed attempt up to MAX_BACKOFF.
INITIAL_BACKOFF = 0.5
MAX_BACKOFF = 30.0
#: A tcp connect still pending after this long counts as failed.
CONNECT_TIMEOUT = 10.0
#: At most this many bytes are handed to one send() on a stream socket.
CHUNK_BYTES = 64 * 1024
#: How often the loop looks at a name resolution running in its thread.
RESOLVE_POLL = 0.05
#: At shutdown, how long a connected peer gets to take what is still queued.
CLOSE_GRACE = 2.0
#: sun_path holds 108 bytes including the terminating NUL.
UNIX_PATH_MAX = 108

_TRANSIENT = (BlockingIOError, InterruptedError)


@dataclass(frozen=True)
class Endpoint:
    """Where records go: `unix` uses `path`, `tcp`/`udp` use `host` and `port`."""

    mode: str
    host: str = ""
    port: str = ""
    path: str = ""

    @property
    def stream(self) -> bool:
        return self.mode != "udp"

    def __str__(self) -> str:
        if self.mode == "unix":
            return f"unix:{self.path}"
        return f"{self.mode}:{self.host}:{self.port}"


def check_unix_path(path: str) -> str | None:
    """Why `path` cannot name a unix socket, or None (ulogd's two checks)."""
    if not path:
        return "missing unix socket path"
    if len(path.encode("utf-8", "surrogateescape")) >= UNIX_PATH_MAX:
        return f"unix socket path `{path}' is longer than {UNIX_PATH_MAX - 1} bytes"
    return None


class SocketSink:
    """Queue records and move them to the peer whenever it can take them."""

    def __init__(self, endpoint: Endpoint, queue_max: int, counters: Counters,
                 owner: str) -> None:
        self.endpoint = endpoint
        self.queue_max = queue_max
        self.counters = counters
        self.owner = owner
        self.queue: collections.deque[bytes] = collections.deque()
        #: Bytes of queue[0] already sent on the current connection (stream sockets).
        self.offset = 0
        self.sock: socket.socket | None = None
        self.state = "down"  # down | resolving | connecting | up
        self.loop: Any = None
        self.backoff = INITIAL_BACKOFF
        #: Bumped on every (re)connect: timers and resolutions of older attempts do nothing.
        self.attempt = 0
        self.addresses: list[tuple] = []
        self.peer: Any = None  # the udp destination
        self.ever_up = False
        self.outage = False
        self.failed_attempts = 0
        self.dropping = 0
        self.writing = False
        self._resolved: tuple[int, Any] | None = None

    # -- life cycle -----------------------------------------------------------
    def start(self, loop: Any) -> None:
        """Begin connecting; a peer that is not there yet is retried, never fatal."""
        self.loop = loop
        log.info("%s: connecting to %s", self.owner, self.endpoint)
        self._connect()

    def reconnect(self) -> None:
        """SIGHUP: drop the connection and connect again now; queued records stay."""
        self._close_socket()
        self.backoff = INITIAL_BACKOFF
        self._connect()

    def close(self) -> None:
        """Shutdown: give a connected peer a short grace period, count what is left."""
        self.attempt += 1
        if self.state == "up" and self.queue:
            self._drain_blocking(CLOSE_GRACE)
        self._close_socket()
        if self.queue:
            self.counters.add("dropped", len(self.queue))
            log.error("%s: %d records could not be sent to %s", self.owner, len(self.queue),
                      self.endpoint)
            self.queue.clear()

    # -- the per-event path ---------------------------------------------------
    def send(self, data: bytes) -> None:
        """Queue one record; it leaves at the next `flush` (or now if the queue is full)."""
        queue = self.queue
        if len(queue) >= self.queue_max:
            self.flush()
            if len(queue) >= self.queue_max and not self._drop_oldest():
                return
        queue.append(data)

    def flush(self) -> None:
        if self.state == "up" and self.queue and not self.writing:
            self._pump()

    def _drop_oldest(self) -> bool:
        """Make room by dropping the oldest record not yet started; False: drop the new one."""
        self.counters.add("dropped")
        if not self.dropping:
            log.error("%s: %d records queued for %s, dropping the oldest until it takes more",
                      self.owner, len(self.queue), self.endpoint)
        self.dropping += 1
        if not self.offset:
            self.queue.popleft()
        elif len(self.queue) > 1:  # the head is half sent: it must still go out whole
            del self.queue[1]
        else:
            return False
        return True

    # -- sending ----------------------------------------------------------------
    def _pump(self) -> None:
        if self.endpoint.stream:
            self._pump_stream()
        else:
            self._pump_datagrams()
        if self.dropping and len(self.queue) < self.queue_max // 2:
            log.log(25, "%s: %s takes records again; %d were dropped", self.owner,
                    self.endpoint, self.dropping)
            self.dropping = 0

    def _pump_stream(self) -> None:
        sock, queue = self.sock, self.queue
        assert sock is not None
        while queue:
            parts = [memoryview(queue[0])[self.offset:]] if self.offset else []
            size = 0
            for record in islice(queue, 1 if self.offset else 0, None):
                parts.append(record)
                size += len(record)
                if size >= CHUNK_BYTES:
                    break
            chunk = parts[0] if len(parts) == 1 else b"".join(parts)
            try:
                sent = sock.send(chunk)
            except _TRANSIENT:
                self._want_write(True)
                return
            except OSError as exc:
                self._lost(exc)
                return
            self._consume(sent)

    def _consume(self, sent: int) -> None:
        """Remove what `sent` bytes completed; remember how far into the next record we are."""
        queue = self.queue
        sent += self.offset
        done = 0
        while queue and sent >= len(queue[0]):
            sent -= len(queue.popleft())
            done += 1
        self.offset = sent
        if done:
            self.counters.add("sent", done)

    def _pump_datagrams(self) -> None:
        sock, queue, peer = self.sock, self.queue, self.peer
        assert sock is not None
        done = 0
        while queue:
            try:
                sock.sendto(queue[0], peer)
            except _TRANSIENT:
                self._want_write(True)
                break
            except OSError as exc:
                if exc.errno == errno.EMSGSIZE:  # can never be sent: drop it, keep going
                    self.counters.add("dropped")
                    log.error("%s: a record of %d bytes is too large for a datagram, dropped",
                              self.owner, len(queue.popleft()))
                    continue
                self._lost(exc)
                break
            queue.popleft()
            done += 1
        if done:
            self.counters.add("sent", done)

    def _want_write(self, on: bool) -> None:
        if on != self.writing and self.sock is not None:
            if on:
                self.loop.add_writer(self.sock, self._on_writable)
            else:
                self.loop.remove_writer(self.sock)
            self.writing = on

    def _on_writable(self) -> None:
        if self.state == "connecting":
            self._connect_done()
            return
        self._want_write(False)
        if self.state == "up":
            self._pump()

    def _on_readable(self) -> None:
        """The peer has nothing to say; reading tells us when it closes or resets."""
        assert self.sock is not None
        try:
            data = self.sock.recv(65536)
        except _TRANSIENT:
            return
        except OSError as exc:
            self._lost(exc)
            return
        if not data:
            self._lost(ConnectionResetError(errno.ECONNRESET, "connection closed by peer"))

    # -- connecting -------------------------------------------------------------
    def _connect(self) -> None:
        self.attempt += 1
        self.offset = 0
        ep = self.endpoint
        if ep.mode == "unix":
            self._try_addresses([(socket.AF_UNIX, socket.SOCK_STREAM, 0, "", ep.path)])
            return
        socktype = socket.SOCK_STREAM if ep.stream else socket.SOCK_DGRAM
        try:  # a numeric host resolves at once, without the resolver
            infos = socket.getaddrinfo(ep.host, ep.port, 0, socktype, 0, socket.AI_NUMERICHOST)
        except socket.gaierror:
            self._resolve_in_thread(socktype)
            return
        self._try_addresses(infos)

    def _resolve_in_thread(self, socktype: int) -> None:
        attempt, ep = self.attempt, self.endpoint
        self.state = "resolving"
        self._resolved = None

        def work() -> None:
            try:
                result: Any = socket.getaddrinfo(ep.host, ep.port, 0, socktype)
            except OSError as exc:
                result = exc
            self._resolved = (attempt, result)

        threading.Thread(target=work, name=f"resolve {ep.host}", daemon=True).start()
        self._later(RESOLVE_POLL, lambda: self._check_resolved(attempt))

    def _check_resolved(self, attempt: int) -> None:
        if attempt != self.attempt:
            return  # superseded (SIGHUP, shutdown)
        got = self._resolved
        if got is None or got[0] != attempt:
            self._later(RESOLVE_POLL, lambda: self._check_resolved(attempt))
            return
        result = got[1]
        if isinstance(result, OSError):
            self._failed(f"getaddrinfo: {result.strerror or result}")
            return
        self._try_addresses(result)

    def _try_addresses(self, infos: list[tuple]) -> None:
        self.addresses = list(infos)
        self._next_address(None)

    def _next_address(self, error: str | None) -> None:
        """Try the next address getaddrinfo gave; when none is left the attempt failed."""
        self._close_socket()
        if not self.addresses:
            self._failed(error or "no address")
            return
        family, socktype, proto, _name, addr = self.addresses.pop(0)
        try:
            sock = socket.socket(family, socktype | socket.SOCK_CLOEXEC, proto)
        except OSError as exc:
            self._next_address(exc.strerror)
            return
        sock.setblocking(False)
        self.sock = sock
        if not self.endpoint.stream:
            self.peer = addr  # udp: no connect, so no ICMP errors come back on sends
            self._up()
            return
        err = sock.connect_ex(addr)
        if err == 0:
            self._up()
        elif err == errno.EINPROGRESS:  # tcp: the loop says when it is done
            self.state = "connecting"
            self._want_write(True)
            attempt = self.attempt
            self._later(CONNECT_TIMEOUT, lambda: self.state == "connecting"
                        and self.attempt == attempt and self._next_address("connect timed out"))
        else:  # refused, no such socket file, unix backlog full (EAGAIN), ...
            self._next_address(os.strerror(err))

    def _connect_done(self) -> None:
        assert self.sock is not None
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        self._want_write(False)
        if err:
            self._next_address(os.strerror(err))
        else:
            self._up()

    def _up(self) -> None:
        self.state = "up"
        self.addresses = []
        self.backoff = INITIAL_BACKOFF
        if self.endpoint.stream:
            assert self.sock is not None
            self.loop.add_reader(self.sock, self._on_readable)
        n = self.failed_attempts
        if self.outage and n:
            log.log(25, "%s: connected to %s after %d failed attempt%s; %d records queued",
                    self.owner, self.endpoint, n, "" if n == 1 else "s", len(self.queue))
        elif self.outage:
            log.log(25, "%s: reconnected to %s; %d records queued", self.owner, self.endpoint,
                    len(self.queue))
        else:
            log.info("%s: connected to %s", self.owner, self.endpoint)
        self.outage = False
        self.failed_attempts = 0
        self.ever_up = True
        self.flush()

    def _failed(self, reason: str) -> None:
        """A connect attempt failed: note it (logged once per outage), retry later."""
        self.counters.add("connect_failures")
        self.failed_attempts += 1
        self._close_socket()
        self.state = "down"
        if not self.outage:
            self.outage = True
            level = logging.ERROR if self.ever_up else logging.WARNING
            log.log(level, "%s: can't connect to %s: %s; retrying, records are queued (at most "
                    "%d)", self.owner, self.endpoint, reason, self.queue_max)
        delay, self.backoff = self.backoff, min(self.backoff * 2, MAX_BACKOFF)
        attempt = self.attempt
        self._later(delay, lambda: self.attempt == attempt and self._connect())

    def _lost(self, exc: OSError) -> None:
        """A send failed or the peer went away: the queue stays, the connection is rebuilt."""
        self.counters.add("write_errors")
        if not self.outage:
            self.outage = True
            log.error("%s: Failure sending message to %s: %s; reconnecting, records are "
                      "queued (at most %d)", self.owner, self.endpoint,
                      exc.strerror or exc, self.queue_max)
        self._close_socket()
        self.state = "down"
        self.offset = 0  # the cut record goes out whole on the next connection
        self.attempt += 1
        attempt = self.attempt
        delay, self.backoff = self.backoff, min(self.backoff * 2, MAX_BACKOFF)
        self._later(delay, lambda: self.attempt == attempt and self._connect())

    # -- helpers ------------------------------------------------------------------
    def _later(self, delay: float, callback: Callable[[], object]) -> None:
        self.loop.call_later(delay, callback)

    def _close_socket(self) -> None:
        sock = self.sock
        if sock is None:
            return
        if self.loop is not None:
            self.loop.remove_reader(sock)
            self.loop.remove_writer(sock)
        self.writing = False
        sock.close()
        self.sock = None
        if self.state in ("up", "connecting"):
            self.state = "down"

    def _drain_blocking(self, grace: float) -> None:
        """At exit only: wait up to `grace` seconds for the peer to take the queue."""
        sock = self.sock
        assert sock is not None
        deadline = time.monotonic() + grace
        try:
            while self.queue and (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                if self.endpoint.stream:
                    first = memoryview(self.queue[0])[self.offset:]
                    self._consume(sock.send(first))
                else:
                    sock.sendto(self.queue[0], self.peer)
                    self.queue.popleft()
                    self.counters.add("sent")
        except OSError:
            pass
