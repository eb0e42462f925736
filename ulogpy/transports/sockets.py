"""A non-blocking socket for JSON's socket modes (tcp, udp, unix).

ulogd sends each record with a blocking `send()` and, when that fails,
reconnects synchronously; a peer that is slow, gone or unreachable stalls
the whole daemon, and a peer down at start-up kills the stack (spec 4.13,
O3).  Here the daemon never waits for the peer: this transport is written
from the event loop by the delivery model's `LoopWriter`, which also owns
the queue, the retries with backoff and the counters.  What is left here:

* connecting without blocking: a name that is not numeric resolves in a
  helper thread (DNS can take seconds); a tcp connect in progress, a send
  the peer cannot take yet, raise `WouldBlock` with the socket to wait for;
* a partial send is resumed where it stopped, and a record cut by a lost
  connection is sent whole on the next one (`close` forgets the offset), so
  the peer only ever sees complete lines;
* a stream peer that closes is noticed at once (`peer_closed`).

The bytes the peer receives are ulogd's: each record with its newline, in
order; for udp one datagram per record.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
from dataclasses import dataclass
from typing import Any

from ulogpy.core.plugin import Unavailable, WouldBlock

log = logging.getLogger("ulogpy.sockets")

#: A tcp connect still pending after this long counts as failed.
CONNECT_TIMEOUT = 10.0
#: At most this many bytes are handed to one send() on a stream socket.
CHUNK_BYTES = 64 * 1024
#: How often the loop looks at a name resolution running in its thread.
RESOLVE_POLL = 0.05
#: sun_path holds 108 bytes including the terminating NUL.
UNIX_PATH_MAX = 108

_TRANSIENT = (BlockingIOError, InterruptedError, TimeoutError)


def closed_by_peer(sock: socket.socket, target: str) -> str | None:
    """Why a stream peer that never sends (a log collector) is gone, or None: whatever
    it sent is read and dropped, end of file or an error means it closed or reset.
    Never blocks, whatever the socket's own timeout."""
    try:
        data = sock.recv(65536, socket.MSG_DONTWAIT)
    except _TRANSIENT:
        return None
    except OSError as exc:
        return f"Failure sending message to {target}: {exc.strerror or exc}"
    if not data:
        return f"Failure sending message to {target}: connection closed by peer"
    return None


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


def _encode(line: str) -> bytes:
    return line.encode("utf-8", "surrogateescape")


class SocketTransport:
    """One connection to the endpoint, opened and written without ever blocking."""

    nonblocking = True

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.target = str(endpoint)
        self.sock: socket.socket | None = None
        self.state = "down"  # down | resolving | connecting | up
        #: Bytes of the head record already sent on this connection (stream sockets).
        self.offset = 0
        self.addresses: list[tuple] = []
        self.peer: Any = None  # the udp destination
        self.last_error = ""
        self._resolution: list | None = None

    # -- opening ----------------------------------------------------------------
    def open(self) -> None:
        """Connect, or go on connecting; `WouldBlock` while that is under way."""
        if self.state == "connecting":
            self._connect_done()
            return
        if self.state == "resolving":
            self._resolved()
            return
        ep = self.endpoint
        if ep.mode == "unix":
            self.addresses = [(socket.AF_UNIX, socket.SOCK_STREAM, 0, "", ep.path)]
            self._next_address()
            return
        socktype = socket.SOCK_STREAM if ep.stream else socket.SOCK_DGRAM
        try:  # a numeric host resolves at once, without the resolver
            self.addresses = socket.getaddrinfo(ep.host, ep.port, 0, socktype, 0,
                                                socket.AI_NUMERICHOST)
        except socket.gaierror:
            self._resolve_in_thread(socktype)
        self._next_address()

    def _resolve_in_thread(self, socktype: int) -> None:
        ep = self.endpoint
        result: list = []
        self._resolution = result
        self.state = "resolving"

        def work() -> None:
            try:
                result.append(socket.getaddrinfo(ep.host, ep.port, 0, socktype))
            except OSError as exc:
                result.append(exc)

        threading.Thread(target=work, name=f"resolve {ep.host}", daemon=True).start()
        raise WouldBlock(retry_after=RESOLVE_POLL)

    def _resolved(self) -> None:
        result = self._resolution
        if not result:
            raise WouldBlock(retry_after=RESOLVE_POLL)
        self._resolution = None
        self.state = "down"
        if isinstance(result[0], OSError):
            raise Unavailable(f"can't connect to {self.target}: getaddrinfo: "
                              f"{result[0].strerror or result[0]}")
        self.addresses = list(result[0])
        self._next_address()

    def _next_address(self) -> None:
        """Try the addresses in turn; `Unavailable` when none is left."""
        while self.addresses:
            family, socktype, proto, _name, addr = self.addresses.pop(0)
            self._close_socket()
            try:
                sock = socket.socket(family, socktype | socket.SOCK_CLOEXEC, proto)
            except OSError as exc:
                self.last_error = exc.strerror or str(exc)
                continue
            sock.setblocking(False)
            self.sock = sock
            if not self.endpoint.stream:
                self.peer = addr  # udp: no connect, so no ICMP errors come back on sends
                self.state = "up"
                return
            err = sock.connect_ex(addr)
            if err == 0:
                self.state = "up"
                return
            if err == errno.EINPROGRESS:  # tcp: the loop says when it is done
                self.state = "connecting"
                raise WouldBlock(fileno=sock.fileno(), retry_after=CONNECT_TIMEOUT)
            self.last_error = os.strerror(err)  # refused, no socket file, backlog full
        self._close_socket()
        raise Unavailable(f"can't connect to {self.target}: {self.last_error or 'no address'}")

    def _connect_done(self) -> None:
        assert self.sock is not None
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.last_error = os.strerror(err)
            self._next_address()
        else:
            self.state = "up"

    # -- sending ----------------------------------------------------------------
    def write(self, items: list[str]) -> int:
        return self._send_stream(items) if self.endpoint.stream else self._send_datagrams(items)

    def _send_stream(self, items: list[str]) -> int:
        sock = self.sock
        assert sock is not None
        done = 0
        while done < len(items):
            parts: list[bytes | memoryview] = []
            size = 0
            for line in items[done:]:
                data = _encode(line)
                if not parts and self.offset:
                    data = memoryview(data)[self.offset:]
                parts.append(data)
                size += len(data)
                if size >= CHUNK_BYTES:
                    break
            chunk = parts[0] if len(parts) == 1 else b"".join(parts)
            try:
                sent = sock.send(chunk)
            except _TRANSIENT:
                raise WouldBlock(done, fileno=sock.fileno(), started=bool(self.offset)) from None
            except OSError as exc:
                raise Unavailable(f"Failure sending message to {self.target}: "
                                  f"{exc.strerror or exc}", written=done) from None
            for index, part in enumerate(parts):
                if sent >= len(part):
                    sent -= len(part)
                    done += 1
                    self.offset = 0
                else:
                    self.offset = (self.offset if index == 0 else 0) + sent
                    break
        return done

    def _send_datagrams(self, items: list[str]) -> int:
        sock = self.sock
        assert sock is not None
        sent = refused = 0
        for line in items:
            try:
                sock.sendto(_encode(line), self.peer)
            except _TRANSIENT:
                raise WouldBlock(sent, fileno=sock.fileno(), rejected=refused) from None
            except OSError as exc:
                if exc.errno == errno.EMSGSIZE:  # can never be sent: refused, go on
                    refused += 1
                    log.error("%s: a record of %d bytes is too large for a datagram, "
                              "dropped", self.target, len(_encode(line)))
                    continue
                raise Unavailable(f"Failure sending message to {self.target}: "
                                  f"{exc.strerror or exc}", written=sent + refused) from None
            sent += 1
        return sent

    def set_timeout(self, seconds: float) -> None:
        """At exit, once the loop has ended: sends block, for at most `seconds`."""
        if self.sock is not None:
            self.sock.settimeout(max(0.001, seconds))

    # -- the peer -----------------------------------------------------------------
    def peer_fileno(self) -> int | None:
        """The socket to watch for the peer closing (connected streams only)."""
        if self.sock is not None and self.state == "up" and self.endpoint.stream:
            return self.sock.fileno()
        return None

    def peer_closed(self) -> str | None:
        """The peer has nothing to say: readable means it closed or reset; why, or None."""
        return None if self.sock is None else closed_by_peer(self.sock, self.target)

    def close(self) -> None:
        self._close_socket()
        self.state = "down"
        self.offset = 0  # a cut record goes out whole on the next connection
        self._resolution = None

    def _close_socket(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
