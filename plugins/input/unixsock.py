"""UNIXSOCK: framed IP packets from a local stream socket, e.g. sent by NuFW (spec 4.21).

A sender connects to `socket_path` and writes frames (network byte order):

    marker u32 = 0x41c90fd4 | size u16 = bytes after the marker - 2 (so the frame is
    size + 4 bytes) | version/reserved u32 | payload length u16 | the IP packet |
    zero padding to a multiple of 8 | options

and each option is `id u32 | length u32 | value | padding to a multiple of 8`.  One
frame is one packet event.  What ulogd 2.0.8 sets, and so what we set: `raw.pkt`,
`raw.pktlen` (the declared payload length), `raw.pktcount` = 1, `oob.family` from the
IP version nibble (4 -> 2, 6 -> 10, else 0), and one key per option present (table
`OPTION_KEYS`).  Nothing else: no `oob.protocol`, no time when the sender gives none
(LOGEMU and JSON then use the time of writing), no `raw.label` without option 206.
Options are read only inside their own frame (ulogd 2.0.8 walks on past a frame that
has none and picks up the next frame's options).

One client at a time, as ulogd: a second connection is accepted and closed at once
(logged, counted).  Where ulogd exits (read error) or drops bytes and loses the
framing, ulogpy closes the client, counts and logs; a frame whose payload does not fit
in it is skipped alone.  A stale socket file left by a dead daemon is removed before
binding (ulogd refuses to start, spec O16); a live one is never taken over.
"""

from __future__ import annotations

import errno
import grp
import logging
import os
import pwd
import socket
import stat
import struct
from collections.abc import Callable, Iterator

from ulogpy.core.keys import RAW, STRING, U8, U16, U32, keys
from ulogpy.core.loopapi import LoopAPI
from ulogpy.core.plugin import Counters, DataType, InputPlugin, Option, PluginError, counters

log = logging.getLogger("ulogpy.unixsock")
NOTICE = 25

MARKER = 0x41C90FD4
#: marker, size, version/reserved, payload length: the 12 bytes before the packet.
FRAME_HEAD = struct.Struct("!IHIH")
OPTION_HEAD = struct.Struct("!II")
#: Bytes counted by `size` beyond the packet and options: size, version, payload length.
SIZE_OVERHEAD = 8
#: sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
MAX_PATH_BYTES = 107
LISTEN_BACKLOG = 10
READ_CHUNK = 65536
#: Reads per wake-up before the loop gets control back (flushes, signals, other inputs).
READS_PER_WAKEUP = 64
#: How many occurrences of one kind of client problem are logged before only counting.
LOGGED_PROBLEMS = 5

_HOST_U32 = struct.Struct("=I").unpack_from
_FAMILY_BY_VERSION = {4: socket.AF_INET.value, 6: socket.AF_INET6.value}


def _align8(n: int) -> int:
    return (n + 7) & ~7


def _cstring(value: bytes) -> str:
    """A C string: up to the first NUL (bytes that are not UTF-8 survive the round trip)."""
    end = value.find(b"\0")
    return (value if end < 0 else value[:end]).decode("utf-8", "surrogateescape")


def _host_u32(value: bytes) -> int | None:
    """A u32 in the sender's host order (ulogd reads it in place); None if too short."""
    return _HOST_U32(value)[0] if len(value) >= 4 else None


def _u8(value: bytes) -> int | None:
    return value[0] if value else None


#: option id -> (output key, decoder); a decoder returns None for a value too short.
OPTION_KEYS: dict[int, tuple[str, Callable[[bytes], object]]] = {
    1: ("oob.prefix", _cstring),
    2: ("oob.in", _cstring),
    3: ("oob.out", _cstring),
    4: ("oob.time.sec", _host_u32),
    200: ("nufw.user.name", _cstring),
    201: ("nufw.user.id", _host_u32),
    202: ("nufw.os.name", _cstring),
    203: ("nufw.os.rel", _cstring),
    204: ("nufw.os.vers", _cstring),
    205: ("nufw.app.name", _cstring),
    206: ("raw.label", _u8),  # NuFW connection state: 0 drop, 1 open, 2 established, ...
}


class LostFraming(Exception):
    """The byte stream cannot be split into frames any more: the client must go."""


def decode_frame(frame: bytes, counters: Counters) -> dict | None:
    """The record for one whole frame (marker included), or None if it is inconsistent.

    Option problems are counted and end the option walk; the packet is still emitted.
    """
    _marker, size, _version, plen = FRAME_HEAD.unpack_from(frame)
    end = size + 4
    if plen > size - SIZE_OVERHEAD:
        counters.add("bad_frames")
        return None
    start = FRAME_HEAD.size
    pkt = frame[start : start + plen]
    record: dict = {
        "raw.pkt": pkt,
        "raw.pktlen": plen,
        "raw.pktcount": 1,
        "oob.family": _FAMILY_BY_VERSION.get(pkt[0] >> 4, 0) if pkt else 0,
    }
    pos = start + _align8(plen)
    while pos < end:
        if end - pos < OPTION_HEAD.size:
            counters.add("malformed_options")
            break
        oid, olen = OPTION_HEAD.unpack_from(frame, pos)
        value_at = pos + OPTION_HEAD.size
        if olen > end - value_at:
            counters.add("malformed_options")
            break
        pos = value_at + _align8(olen)
        entry = OPTION_KEYS.get(oid)
        if entry is None:
            counters.add("unknown_options")
            if counters.get("unknown_options") <= LOGGED_PROBLEMS:
                log.log(NOTICE, "unknown option %d (length %d) skipped", oid, olen)
            continue
        name, decode = entry
        value = decode(frame[value_at : value_at + olen])
        if value is None:
            counters.add("malformed_options")
            continue
        record[name] = value
    return record


class FrameBuffer:
    """Reassembles frames from stream reads: splits and joins across `feed` calls."""

    def __init__(self, limit: int) -> None:
        #: Largest frame accepted (ulogd: `bufsize`, the most it buffers).
        self.limit = limit
        self.pending = b""

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Yield every frame completed by `data`; raises `LostFraming` on garbage."""
        buf = self.pending + data if self.pending else data
        pos = 0
        have = len(buf)
        while have - pos >= 6:
            marker, size = struct.unpack_from("!IH", buf, pos)
            if marker != MARKER:
                self.pending = b""
                raise LostFraming(f"bad frame marker 0x{marker:08x}")
            if size < SIZE_OVERHEAD:
                self.pending = b""
                raise LostFraming(f"frame size {size} is shorter than a frame header")
            if size + 4 > self.limit:
                self.pending = b""
                raise LostFraming(f"frame of {size + 4} bytes exceeds bufsize {self.limit}")
            if have - pos < size + 4:
                break
            yield buf[pos : pos + size + 4]
            pos += size + 4
        if have - pos >= 4 and struct.unpack_from("!I", buf, pos)[0] != MARKER:
            self.pending = b""
            raise LostFraming("bad frame marker")
        self.pending = buf[pos:]

    def reset(self) -> None:
        self.pending = b""


# -- options -------------------------------------------------------------------------


def _check_path(value: str) -> str | None:
    if not value:
        return "must not be empty"
    if len(os.fsencode(value)) > MAX_PATH_BYTES:
        return f"is longer than {MAX_PATH_BYTES} bytes, the limit of a unix socket path"
    return None


def _check_perms(value: int) -> str | None:
    return None if 0 <= value <= 0o7777 else f"{value} is not a file mode"


def _check_bufsize(value: int) -> str | None:
    return None if value >= 0 else "must be >= 0"


def _check_owner(value: str) -> str | None:
    if value:
        try:
            pwd.getpwnam(value)
        except KeyError:
            return f"no user '{value}' on this system"
    return None


def _check_group(value: str) -> str | None:
    if value:
        try:
            grp.getgrnam(value)
        except KeyError:
            return f"no group '{value}' on this system"
    return None


class UNIXSOCK(InputPlugin):
    name = "UNIXSOCK"
    description = "Packets framed on a local unix stream socket (NuFW)"
    counter_table = counters(
        ("clients", False, "connections accepted"),
        ("frames", False, "frames read"),
        ("bad_frames", True, "frames that could not be decoded"),
        ("truncated_frames", True, "frames cut short by the client"),
        ("unknown_options", False, "frame options ulogd does not know"),
        ("malformed_options", True, "frames with malformed options"),
    )
    output_type = DataType.RAW
    options = (
        Option("socket_path", str, "/var/run/ulogd/ulogd2.sock", check=_check_path,
               help="path of the listening unix socket (at most 107 bytes)"),
        Option("bufsize", int, 0, check=_check_bufsize,
               help="largest frame accepted, in bytes; 0: the socket's receive buffer size"),
        Option("perms", int, 0o600, check=_check_perms,
               help="mode of the socket file, e.g. 0600 (octal)"),
        Option("owner", str, "", check=_check_owner,
               help="user name owning the socket file (empty: unchanged)"),
        Option("group", str, "", check=_check_group,
               help="group name of the socket file (empty: unchanged)"),
    )
    output_keys = keys(
        ("raw.mac", RAW), ("raw.pkt", RAW), ("raw.pktlen", U32), ("raw.pktcount", U32),
        ("oob.prefix", STRING), ("oob.time.sec", U32), ("oob.time.usec", U32),
        ("oob.mark", U32), ("oob.in", STRING), ("oob.out", STRING), ("oob.hook", U8),
        ("raw.mac_len", U16), ("oob.seq.local", U32), ("oob.seq.global", U32),
        ("oob.family", U8), ("oob.protocol", U16), ("oob.uid", U32), ("oob.gid", U32),
        ("raw.label", U8), ("raw.type", U16), ("raw.mac.saddr", RAW),
        ("raw.mac.addrlen", U16), ("nufw.user.name", STRING), ("nufw.user.id", U32),
        ("nufw.os.name", STRING), ("nufw.os.rel", STRING), ("nufw.os.vers", STRING),
        ("nufw.app.name", STRING),
    )

    def configure(self) -> None:
        cfg = self.config
        self.path = os.path.abspath(cfg.socket_path)
        self.uid = pwd.getpwnam(cfg.owner).pw_uid if cfg.owner else -1
        self.gid = grp.getgrnam(cfg.group).gr_gid if cfg.group else -1
        self.listener: socket.socket | None = None
        self.client: socket.socket | None = None
        self.frames: FrameBuffer | None = None
        self.loop = None
        self._inode: tuple[int, int] | None = None

    # -- start / stop ---------------------------------------------------------
    def start(self, loop: LoopAPI) -> None:
        self.loop = loop
        self._remove_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            os.makedirs(os.path.dirname(self.path), mode=0o755, exist_ok=True)
            sock.bind(self.path)
            st = os.stat(self.path)
            self._inode = (st.st_dev, st.st_ino)
            os.chmod(self.path, self.config.perms)
            if self.uid != -1 or self.gid != -1:
                os.chown(self.path, self.uid, self.gid)
            sock.listen(LISTEN_BACKLOG)
            limit = self.config.bufsize or sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        except OSError as exc:
            sock.close()
            self._unlink_ours()
            raise PluginError(f"socket_path {self.path}: {exc.strerror}") from None
        sock.setblocking(False)
        self.listener = sock
        self.frames = FrameBuffer(limit)
        loop.add_reader(sock, self._accept)
        log.info("%s: listening on %s (mode %04o)", self.id, self.path, self.config.perms)

    def _remove_stale(self) -> None:
        """Unlink a socket file nobody listens on; refuse a live socket or any other file."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise PluginError(f"socket_path {self.path}: {exc.strerror}") from None
        if not stat.S_ISSOCK(st.st_mode):
            raise PluginError(f"socket_path {self.path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            probe.connect(self.path)
        except OSError as exc:
            if exc.errno != errno.ECONNREFUSED:
                raise PluginError(f"socket_path {self.path}: {exc.strerror}") from None
        else:
            raise PluginError(f"socket_path {self.path} is in use by another process")
        finally:
            probe.close()
        os.unlink(self.path)
        log.log(NOTICE, "%s: removed stale socket %s", self.id, self.path)

    def stop(self) -> None:
        self._drop_client()
        if self.listener is not None:
            if self.loop is not None:
                self.loop.remove_reader(self.listener)
            self.listener.close()
            self.listener = None
            self._unlink_ours()

    def _unlink_ours(self) -> None:
        """Remove the socket file if it is still the one we bound (not a successor's)."""
        try:
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.path)
        except OSError:
            pass

    # -- clients --------------------------------------------------------------
    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._problem("accept_errors", "accepting a client failed: %s", exc.strerror)
            return
        if self.client is not None:
            conn.close()
            self._problem("clients_rejected",
                          "a client is already connected, rejecting new connection")
            return
        conn.setblocking(False)
        self.client = conn
        self.counters.add("clients")
        log.debug("%s: client connected", self.id)
        self.loop.add_reader(conn, self.on_readable)

    def _drop_client(self) -> None:
        if self.client is not None:
            if self.loop is not None:
                self.loop.remove_reader(self.client)
            self.client.close()
            self.client = None
        if self.frames is not None:
            self.frames.reset()

    def on_readable(self) -> None:
        """Read what the client sent; `receive` each complete frame."""
        recv = self.client.recv
        feed = self.frames.feed
        receive = self.receive  # the instance's: the daemon's guard wraps it
        counters = self.counters
        for _ in range(READS_PER_WAKEUP):
            try:
                data = recv(READ_CHUNK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ulogd exits here (code 255); a client is not worth that
                self._problem("read_errors", "reading the client failed: %s", exc.strerror)
                self._drop_client()
                return
            if not data:
                if self.frames.pending:
                    counters.add("truncated_frames")
                log.debug("%s: client disconnected", self.id)
                self._drop_client()
                return
            try:
                for frame in feed(data):
                    receive(frame)
            except LostFraming as exc:
                self._problem("bad_streams", "%s, closing the client", exc)
                self._drop_client()
                return

    def receive(self, data: bytes) -> None:
        """One whole frame (marker included): its packet event, if it is consistent.

        Per frame, not per read: the framing lives in `FrameBuffer`, so a frame that
        fails (and the daemon's guard skips) leaves the stream in step."""
        self.counters.add("frames")
        record = decode_frame(data, self.counters)
        if record is not None:
            self.emit(record)

    def _problem(self, counter: str, fmt: str, *args: object) -> None:
        self.counters.add(counter)
        if self.counters.get(counter) <= LOGGED_PROBLEMS:
            log.log(NOTICE, "%s: " + fmt, self.id, *args)
