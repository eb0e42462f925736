"""nfnetlink_acct codec: the kernel's accounting objects (`nfacct`) to ulogd's sum keys.

Why a codec of its own: NFACCT asks the kernel for every accounting object
(the ones `nfacct add NAME` makes and `iptables -m nfacct --nfacct-name NAME`
or nftables counts into), and the answer is one NFNL_MSG_ACCT_NEW message per
object.  The attributes are declared once in `ATTRS` (numbers checked against
the kernel UAPI header ``linux/netfilter/nfnetlink_acct.h``), and one loop
decodes any message with them.  The object's name is a NUL-terminated string
of variable length, which the fixed-size walker of `ulogpy.netlink.attrs`
does not take, so the table here carries its own small value decoders.

Error contract: `decode_acct` raises `MalformedMessage` for broken bytes or an
object without name or counters, and nothing else; it returns None for a
well-formed message that is no accounting object (another nfnetlink subsystem,
another message type, a netlink control message).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ulogpy.netlink.attrs import MalformedMessage, attr, iter_attrs, message_length
from ulogpy.netlink.nlsock import NLM_F_DUMP, NLM_F_REQUEST, NLMSG_HDRLEN, NLMSGHDR

__all__ = ["AcctObject", "MalformedMessage", "build_get_request", "decode_acct"]

NFNL_SUBSYS_ACCT = 7
NFNETLINK_V0 = 0
NFGENMSG = struct.Struct("!BBH")  # family, version, res_id (big endian)
_MIN_LEN = NLMSG_HDRLEN + NFGENMSG.size

# enum nfnl_acct_msg_types
NFNL_MSG_ACCT_NEW = 0
NFNL_MSG_ACCT_GET = 1
NFNL_MSG_ACCT_GET_CTRZERO = 2
NFNL_MSG_ACCT_DEL = 3
NFNL_MSG_ACCT_OVERQUOTA = 4

# enum nfnl_acct_type
NFACCT_NAME = 1
NFACCT_PKTS = 2
NFACCT_BYTES = 3
NFACCT_USE = 4
NFACCT_FLAGS = 5
NFACCT_QUOTA = 6
NFACCT_FILTER = 7
NFACCT_PAD = 8

#: The kernel's limit on an object's name, NUL included.
NFACCT_NAME_MAX = 32

_BE32 = struct.Struct(">I").unpack_from
_BE64 = struct.Struct(">Q").unpack_from


def _name(buf: bytes, start: int, end: int) -> str:
    """A NUL-terminated name; bytes that are no UTF-8 are kept visible, escaped."""
    raw = bytes(buf[start:end]).partition(b"\0")[0]
    if not raw:
        raise MalformedMessage("accounting object with an empty name")
    return raw.decode("utf-8", "backslashreplace")


def _be(unpack: Callable[..., tuple[int]], size: int) -> Callable[[bytes, int, int], int]:
    def value(buf: bytes, start: int, end: int) -> int:
        if end - start < size:
            raise MalformedMessage(f"counter attribute of {end - start} bytes")
        return unpack(buf, start)[0]
    return value


#: attribute type -> (field of `AcctObject`, value decoder(buf, start, end)).
ATTRS: dict[int, tuple[str, Callable[[bytes, int, int], Any]]] = {
    NFACCT_NAME: ("name", _name),
    NFACCT_PKTS: ("pkts", _be(_BE64, 8)),
    NFACCT_BYTES: ("bytes", _be(_BE64, 8)),
    NFACCT_USE: ("use", _be(_BE32, 4)),
    NFACCT_FLAGS: ("flags", _be(_BE32, 4)),
    NFACCT_QUOTA: ("quota", _be(_BE64, 8)),
}
#: What every object must carry to be reported.
REQUIRED = ("name", "pkts", "bytes")


@dataclass(frozen=True, slots=True)
class AcctObject:
    """One accounting object as the kernel reported it."""

    name: str
    pkts: int
    bytes: int
    use: int = 0
    flags: int = 0
    quota: int | None = None

    def values(self) -> dict[str, Any]:
        """The object under ulogd's key names (NFACCT's output keys, `sum` apart)."""
        return {"sum.name": self.name, "sum.pkts": self.pkts, "sum.bytes": self.bytes}


def build_get_request(seq: int, zero_counters: bool = False) -> bytes:
    """A dump request for every accounting object.

    With `zero_counters` it is NFNL_MSG_ACCT_GET_CTRZERO: the kernel reports each
    object's counters and resets them in the same step, so no packet counted
    between the report and the reset is lost (ulogd's `zerocounter`).
    """
    sub = NFNL_MSG_ACCT_GET_CTRZERO if zero_counters else NFNL_MSG_ACCT_GET
    mtype = (NFNL_SUBSYS_ACCT << 8) | sub
    return NLMSGHDR.pack(_MIN_LEN, mtype, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + \
        NFGENMSG.pack(0, NFNETLINK_V0, 0)


def decode_acct(buf: bytes, offset: int = 0, length: int | None = None) -> AcctObject | None:
    """The accounting object in the netlink message at `offset`, or None if it is none."""
    length = message_length(len(buf), offset, length)
    if length < _MIN_LEN:
        raise MalformedMessage(f"message of {length} bytes is too short")
    mlen, mtype = NLMSGHDR.unpack_from(buf, offset)[:2]
    if mlen > length or mlen < _MIN_LEN:
        raise MalformedMessage(f"bad netlink message length {mlen}")
    if mtype >> 8 != NFNL_SUBSYS_ACCT or mtype & 0xFF != NFNL_MSG_ACCT_NEW:
        return None
    found: dict[str, Any] = {}
    for atype, _flags, start, end in iter_attrs(buf, offset + _MIN_LEN, offset + mlen):
        entry = ATTRS.get(atype)
        if entry is not None:
            found[entry[0]] = entry[1](buf, start, end)
    missing = [name for name in REQUIRED if name not in found]
    if missing:
        raise MalformedMessage(f"accounting object without {', '.join(missing)}")
    return AcctObject(**found)


def build_object_message(name: str, pkts: int, nbytes: int, use: int = 1,
                         seq: int = 0) -> bytes:
    """An NFNL_MSG_ACCT_NEW message as the kernel sends it (for tests and tools)."""
    body = (attr(NFACCT_NAME, name.encode() + b"\0") + attr(NFACCT_PKTS, struct.pack(">Q", pkts))
            + attr(NFACCT_BYTES, struct.pack(">Q", nbytes))
            + attr(NFACCT_USE, struct.pack(">I", use)))
    head = NLMSGHDR.pack(_MIN_LEN + len(body), (NFNL_SUBSYS_ACCT << 8) | NFNL_MSG_ACCT_NEW,
                         0x2, seq, 0)
    return head + NFGENMSG.pack(0, NFNETLINK_V0, 0) + body
