"""Interface index -> name, kept current from rtnetlink (for IFINDEX).

One cache per process, shared by every IFINDEX instance (as ulogd shares its
interface table): a dump of the kernel's links at start, then an rtnetlink socket
subscribed to RTMGRP_LINK, read from the daemon's loop, applies every new, renamed
and deleted interface as it happens.  So the per-packet look-up is one dict `get`,
and the names are those of the network namespace the daemon runs in.

A packet can only name an interface that exists, and the kernel sends the link
notification before the interface can carry traffic, so an index missing from the
cache means its notification is still queued: `resolve` first reads what is queued,
and resyncs with a dump (at most once a second) if that was not enough -- needed
only after the subscription socket overflowed, which also triggers a dump.
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
import time

from ulogpy.netlink import nlsock
from ulogpy.netlink.attrs import MalformedMessage, iter_attrs

log = logging.getLogger("ulogpy.ifnames")

NETLINK_ROUTE = 0
RTMGRP_LINK = 1
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
IFLA_IFNAME = 3
AF_BRIDGE = 7
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFINFO = IFINFOMSG.unpack_from
_MSG_START = nlsock.NLMSG_HDRLEN + IFINFOMSG.size
#: Seconds between two resync dumps caused by unknown indexes.
RESYNC_INTERVAL = 1.0
RECV_BUFSIZE = 65536


def link_dump_request() -> bytes:
    """RTM_GETLINK for all links (AF_UNSPEC)."""
    body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    return nlsock.NLMSGHDR.pack(
        nlsock.NLMSG_HDRLEN + len(body), RTM_GETLINK, nlsock.NLM_F_REQUEST | nlsock.NLM_F_DUMP,
        nlsock.next_seq(), 0,
    ) + body


def parse_link(data: bytes, offset: int, length: int) -> tuple[int, int, str | None]:
    """(family, index, name or None) of an RTM_NEWLINK/RTM_DELLINK message."""
    if length < _MSG_START:
        raise MalformedMessage("link message shorter than its header")
    family, _type, index, _flags, _change = _IFINFO(data, offset + nlsock.NLMSG_HDRLEN)
    for atype, _aflags, start, end in iter_attrs(data, offset + _MSG_START, offset + length):
        if atype == IFLA_IFNAME:
            return family, index, data[start:end].split(b"\0", 1)[0].decode(errors="replace")
    return family, index, None


class InterfaceNames:
    """The cache.  `names` is the live dict (index 0 maps to "")."""

    def __init__(self, names: dict[int, str] | None = None) -> None:
        self.names: dict[int, str] = {0: ""}
        if names:
            self.names.update(names)
        self.sock: socket.socket | None = None
        self.loop = None
        self.users = 0
        self.last_dump = -RESYNC_INTERVAL
        self.dumps = 0
        self.overruns = 0
        self.malformed = 0
        self.errors = 0

    # -- life cycle ---------------------------------------------------------------------
    def open(self, loop) -> None:
        """Subscribe, then dump (so no change falls between the two), register with `loop`."""
        sock = nlsock.open_socket(groups=RTMGRP_LINK, protocol=NETLINK_ROUTE)
        sock.setblocking(False)
        self.sock = sock
        try:
            self.refresh()
        except OSError:
            self.close()
            raise
        self.loop = loop
        if loop is not None:
            loop.add_reader(sock, self.on_readable)

    def close(self) -> None:
        if self.sock is not None:
            if self.loop is not None:
                self.loop.remove_reader(self.sock)
            self.sock.close()
        self.sock = None
        self.loop = None

    # -- the kernel's table -----------------------------------------------------------------
    def refresh(self) -> None:
        """Replace the table by a fresh dump, then apply the changes queued meanwhile."""
        fresh: dict[int, str] = {0: ""}
        with nlsock.open_socket(protocol=NETLINK_ROUTE) as dumper:
            for data, off, mlen in nlsock.dump(dumper, link_dump_request()):
                try:
                    _family, index, name = parse_link(data, off, mlen)
                except MalformedMessage:
                    self.malformed += 1
                    continue
                if name is not None:
                    fresh[index] = name
        self.names.clear()
        self.names.update(fresh)
        self.dumps += 1
        self.last_dump = time.monotonic()
        self.on_readable()

    def on_readable(self) -> None:
        """Apply every queued link notification."""
        sock = self.sock
        if sock is None:
            return
        while True:
            try:
                data = sock.recv(RECV_BUFSIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    self.errors += 1
                    log.error("reading interface notifications failed: %s", exc)
                    return
                # Notifications were lost: only a dump tells the truth again.
                self.overruns += 1
                log.warning("interface notifications lost (socket overrun); reloading the table")
                try:
                    self.refresh()
                except OSError as exc2:
                    self.errors += 1
                    log.error("cannot reload the interface table: %s", exc2)
                return
            try:
                for off, mlen, mtype, *_ in nlsock.iter_messages(data):
                    if mtype == RTM_NEWLINK or mtype == RTM_DELLINK:
                        self._apply(mtype, data, off, mlen)
            except MalformedMessage:
                self.malformed += 1

    def _apply(self, mtype: int, data: bytes, off: int, mlen: int) -> None:
        family, index, name = parse_link(data, off, mlen)
        if mtype == RTM_NEWLINK:
            if name is not None:
                self.names[index] = name
        elif family != AF_BRIDGE and index:
            # A bridge-family DELLINK means "port left its bridge"; the link still exists.
            self.names.pop(index, None)

    # -- look-up ---------------------------------------------------------------------------
    def resolve(self, index: int) -> str | None:
        """The name of an index missing from `names`: read queued notifications, resync
        if allowed, and give up (None) if the kernel does not know it either."""
        if self.sock is None:
            return None
        self.on_readable()
        name = self.names.get(index)
        if name is None and time.monotonic() - self.last_dump >= RESYNC_INTERVAL:
            try:
                self.refresh()
            except OSError as exc:
                log.error("cannot reload the interface table: %s", exc)
            name = self.names.get(index)
        return name


_shared: InterfaceNames | None = None


def acquire(loop) -> InterfaceNames:
    """The process-wide cache, opened on first use (raises OSError if it cannot be)."""
    global _shared
    if _shared is None or _shared.sock is None:
        cache = InterfaceNames()
        cache.open(loop)
        _shared = cache
    _shared.users += 1
    return _shared


def release(cache: InterfaceNames) -> None:
    """Drop one user; the last one closes the socket."""
    global _shared
    cache.users -= 1
    if cache.users <= 0:
        cache.close()
        if _shared is cache:
            _shared = None
