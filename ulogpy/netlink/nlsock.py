"""Raw netlink sockets on the stdlib `socket` module, plus sysctl access.

Why not a library: the daemon needs only a handful of operations (bind to
multicast groups, size the receive buffer, walk the messages of a datagram,
run one dump) and wants them cheap and predictable on the hot path.

Framing errors are reported with `MalformedMessage` (shared with the attribute
walker); kernel-reported failures with `NetlinkError`, an `OSError` carrying
the errno the kernel sent.
"""

from __future__ import annotations

import errno
import itertools
import os
import select
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

from ulogpy.netlink.attrs import MalformedMessage

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_DROP_MEMBERSHIP = 2
NETLINK_BROADCAST_ERROR = 4
NETLINK_NO_ENOBUFS = 5
SO_RCVBUFFORCE = 33

NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4

NLM_F_REQUEST = 0x01
NLM_F_MULTI = 0x02
NLM_F_ACK = 0x04
NLM_F_ECHO = 0x08
NLM_F_DUMP_INTR = 0x10
NLM_F_ROOT = 0x100
NLM_F_MATCH = 0x200
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400

NLMSG_HDRLEN = 16
DUMP_BUFSIZE = 65536  # kernel caps dump skbs at 32 KiB, so this never truncates

NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_NLHDR = NLMSGHDR.unpack_from
_ERRNO = struct.Struct("=i").unpack_from

_seq = itertools.count(int(time.time()) & 0x3FFFFFFF or 1)


class NetlinkError(OSError):
    """The kernel answered a request with an error (errno in `.errno`)."""


def next_seq() -> int:
    """A fresh, non-zero sequence number for a request on any socket."""
    return next(_seq) & 0xFFFFFFFF or next(_seq)


def open_socket(groups: int = 0, protocol: int = NETLINK_NETFILTER) -> socket.socket:
    """Open a netlink socket bound to the multicast `groups` bitmask (0 = none).

    The bitmask is the legacy nl_groups form: bit (g-1) subscribes group g,
    which is what ulogd's `event_mask` already is for conntrack (1, 2, 4).
    """
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol)
    try:
        sock.bind((0, groups))
    except OSError:
        sock.close()
        raise
    return sock


def join_group(sock: socket.socket, group: int) -> None:
    """Subscribe to one multicast group by number (groups above 32 need this)."""
    sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)


def get_rcvbuf(sock: socket.socket) -> int:
    """The receive buffer size as the kernel reports it (twice what was asked)."""
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


def set_rcvbuf(sock: socket.socket, size: int) -> int:
    """Set the receive buffer, past rmem_max when allowed; return the kernel's value.

    SO_RCVBUFFORCE needs CAP_NET_ADMIN; without it fall back to SO_RCVBUF,
    which the kernel silently clamps to net.core.rmem_max.
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return get_rcvbuf(sock)


def set_reliable(sock: socket.socket, enabled: bool = True) -> None:
    """Ask the kernel to report broadcast delivery failures and not to signal ENOBUFS.

    With both set, ctnetlink drops the packet rather than losing the event.
    """
    val = 1 if enabled else 0
    sock.setsockopt(SOL_NETLINK, NETLINK_BROADCAST_ERROR, val)
    sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, val)


def iter_messages(
    buf: bytes | bytearray | memoryview, offset: int = 0, length: int | None = None
) -> Iterator[tuple[int, int, int, int, int, int]]:
    """Yield (offset, length, type, flags, seq, pid) for each message in a datagram.

    Every message is yielded, control ones included (NOOP, ERROR, DONE,
    OVERRUN): what they mean depends on the conversation, see `dump`.
    Messages are 4-byte aligned.  Broken framing raises `MalformedMessage`
    after the intact messages before it have been yielded.
    """
    end = len(buf) if length is None else offset + length
    if offset < 0 or end > len(buf):
        raise MalformedMessage("range outside buffer")
    hdr = _NLHDR
    pos = offset
    while end - pos >= NLMSG_HDRLEN:
        mlen, mtype, mflags, seq, pid = hdr(buf, pos)
        if mlen < NLMSG_HDRLEN or mlen > end - pos:
            raise MalformedMessage(f"bad netlink message length {mlen} at {pos}")
        yield pos, mlen, mtype, mflags, seq, pid
        pos += (mlen + 3) & ~3
    if pos < end:
        raise MalformedMessage(f"{end - pos} trailing bytes after last message")


def error_code(buf: bytes | bytearray | memoryview, offset: int, length: int) -> int:
    """The positive errno carried by an NLMSG_ERROR message (0 means ACK)."""
    if length < NLMSG_HDRLEN + 4:
        raise MalformedMessage("NLMSG_ERROR too short")
    return -_ERRNO(buf, offset + NLMSG_HDRLEN)[0]


def dump(
    sock: socket.socket, request: bytes, bufsize: int = DUMP_BUFSIZE
) -> Iterator[tuple[bytes, int, int]]:
    """Send a dump request and yield (datagram, offset, length) per data message.

    Stops at NLMSG_DONE.  Raises `NetlinkError` for an NLMSG_ERROR with a
    non-zero code, NLMSG_OVERRUN (ENOBUFS), a truncated datagram (EMSGSIZE) or
    a reply whose sequence number is not the request's (EPROTO); multicast
    notifications (seq 0, pid 0) are skipped.  Use a socket that is not
    otherwise in use, and consume the generator to the end: stopping early
    leaves the rest of the dump queued on the socket.
    """
    seq = NLMSGHDR.unpack_from(request)[3]
    sock.send(request)
    while True:
        data, _, rflags, _ = sock.recvmsg(bufsize)
        if rflags & socket.MSG_TRUNC:
            raise NetlinkError(errno.EMSGSIZE, "netlink datagram truncated")
        for off, mlen, mtype, mflags, mseq, pid in iter_messages(data):
            if mseq != seq:
                if mseq == 0 and pid == 0:
                    continue
                raise NetlinkError(errno.EPROTO, f"sequence {mseq} does not match {seq}")
            if mtype == NLMSG_DONE:
                return
            if mtype == NLMSG_ERROR:
                code = error_code(data, off, mlen)
                if code:
                    raise NetlinkError(code, os.strerror(code))
                continue
            if mtype == NLMSG_OVERRUN:
                raise NetlinkError(errno.ENOBUFS, "netlink overrun")
            if mtype == NLMSG_NOOP:
                continue
            yield data, off, mlen
            if not mflags & NLM_F_MULTI:
                return


def request_ack(
    sock: socket.socket,
    request: bytes,
    other: list[bytes] | None = None,
    timeout: float = 5.0,
    bufsize: int = 1 << 17,
) -> None:
    """Send a request carrying NLM_F_ACK and wait for the kernel's answer to it.

    Raises `NetlinkError` with the errno the kernel answered (ETIMEDOUT if
    no answer came within `timeout` s).  Datagrams that are not the answer --
    data the socket receives meanwhile, such as logged packets on an NFLOG
    socket once its group is bound -- are appended to `other` (dropped when
    it is None), so the caller can process them later, in order.
    """
    seq = NLMSGHDR.unpack_from(request)[3]
    sock.send(request)
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            raise NetlinkError(errno.ETIMEDOUT, "no answer from the kernel")
        try:
            data = sock.recv(bufsize, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:  # some data was lost; the answer may still come
                continue
            raise
        answer = None
        try:
            for off, mlen, mtype, _flags, mseq, _pid in iter_messages(data):
                if mtype == NLMSG_ERROR and mseq == seq:
                    answer = error_code(data, off, mlen)
        except MalformedMessage:
            pass
        if answer is None:
            if other is not None:
                other.append(data)
            continue
        if answer:
            raise NetlinkError(answer, os.strerror(answer))
        return


#: The socket receive buffer inputs ask for when the configuration sets no size and no
#: maximum (ulogd then keeps the kernel's ~200 KB), and how far overruns may grow it: a
#: conntrack flush or a packet flood queues tens of MB before a reader catches up.
DEFAULT_RCVBUF = 128 << 20
DEFAULT_RCVBUF_MAX = 1 << 30


def default_rcvbuf(size: int, maxsize: int) -> tuple[int, int]:
    """(size, maxsize) to use: ulogpy's large defaults when the configuration gives neither."""
    if not size and not maxsize:
        return DEFAULT_RCVBUF, DEFAULT_RCVBUF_MAX
    return size, maxsize


def grow_rcvbuf(sock: socket.socket, current: int, maxsize: int) -> int | None:
    """Double the receive buffer after an overrun, up to `maxsize` (kernel-reported sizes).

    Returns the new size as the kernel reports it, or None when `maxsize`
    is 0 (growth not wanted) or already reached.  `current` is what the
    kernel reported before; it is twice what was asked, so half the target is
    asked for, and the buffer really doubles.
    """
    if not maxsize or current >= maxsize:
        return None
    target = min(maxsize, max(current, 1) * 2)
    return set_rcvbuf(sock, max(target // 2, 1))


PROC_NET_NETLINK = Path("/proc/net/netlink")


def netlink_socket_inode(
    portid: int, protocol: int = NETLINK_NETFILTER, path: Path = PROC_NET_NETLINK
) -> int | None:
    """The inode of the netlink socket with `portid` in the caller's netns, or None.

    Columns of the proc file: sk, Eth (protocol), Pid (port id), Groups,
    Rmem, Wmem, Dump, Locks, Drops, Inode.
    """
    try:
        lines = path.read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        cols = line.split()
        if len(cols) >= 10 and cols[1] == str(protocol) and cols[2] == str(portid):
            return int(cols[9])
    return None


def socket_owners(inode: int, proc: Path = Path("/proc")) -> list[tuple[int, str]]:
    """(pid, command name) of every process holding socket `inode` open.

    Scans ``/proc/<pid>/fd``; processes that vanish or cannot be read are
    skipped, so the answer may be empty.
    """
    target = f"socket:[{inode}]"
    owners = []
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            fds = os.scandir(os.path.join(entry.path, "fd"))
        except OSError:
            continue
        with fds:
            for fd in fds:
                try:
                    if os.readlink(fd.path) == target:
                        break
                except OSError:
                    continue
            else:
                continue
        try:
            comm = Path(entry.path, "comm").read_text().strip()
        except OSError:
            comm = "?"
        owners.append((int(entry.name), comm))
    return sorted(owners)


PROC_SYS = Path("/proc/sys")


def _sysctl_path(name: str) -> Path:
    """``a.b.c`` or ``a/b/c`` under /proc/sys (slash form for names with dots, like VLANs)."""
    rel = name.strip("/") if "/" in name else name.replace(".", "/")
    parts = Path(rel).parts
    if not parts or ".." in parts:
        raise ValueError(f"bad sysctl name {name!r}")
    return PROC_SYS.joinpath(*parts)


def get_sysctl(name: str) -> str:
    """Read a sysctl (``net.netfilter.nf_conntrack_acct`` or slash form) as text.

    Values under /proc/sys/net belong to the network namespace of the caller.
    """
    return _sysctl_path(name).read_text().rstrip("\n")


def set_sysctl(name: str, value: str) -> str:
    """Write a sysctl and return its previous value, so the caller can restore it."""
    path = _sysctl_path(name)
    old = path.read_text().rstrip("\n")
    path.write_text(f"{value}\n")
    return old
