"""NFLOG's loss count from the kernel's sequence numbers: losses, and resets that are not.

Fed with the datagrams recorded from the kernel (tests/fixtures/nflog): group 10
numbers its packets 0..7 in one datagram, group 13 lost packets in an overrun
(0..9, then 300..304).  Resets are made by rewriting the NFULA_SEQ attribute
of recorded messages, as a restarted kernel instance or a damaged message would.
"""

from __future__ import annotations

import struct
from functools import cache
from pathlib import Path

import pytest
from ulogpy.plugins.input.nflog import PLAUSIBLE_LOSS

from tests.fixtures.recorded import load_manifest, load_records
from tests.unit.test_nflog_codec import make_plugin as plugin
from ulogpy.netlink import attrs, nflog, nlsock

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "nflog"
_BE32 = struct.Struct("!I").pack


@cache
def datagrams(group: int) -> tuple[bytes, ...]:
    return tuple(r["data"] for r in load_records(FIX) if r["group"] == group
                 and r["kind"] == "data")


def split(datagram: bytes) -> list[bytes]:
    return [datagram[off:off + mlen] for off, mlen, *_ in nlsock.iter_messages(datagram)]


def seq_of(msg: bytes) -> int | None:
    rec = nflog.decode_packet(msg, 0, len(msg), {})
    return None if rec is None else rec.get("oob.seq.local")


def with_seq(msg: bytes, seq: int) -> bytes:
    """`msg` with its NFULA_SEQ rewritten (messages without one are returned as they are)."""
    for atype, _flags, start, end in attrs.iter_attrs(msg, 20, len(msg)):
        if atype == nflog.NFULA_SEQ:
            assert end - start == 4
            return msg[:start] + _BE32(seq & 0xFFFFFFFF) + msg[end:]
    return msg


def renumbered(datagram: bytes, first: int) -> bytes:
    """The datagram with its packets numbered from `first` on (padding kept)."""
    out = b""
    n = first
    for msg in split(datagram):
        if seq_of(msg) is not None:
            msg = with_seq(msg, n)
            n += 1
        out += msg + bytes(-len(msg) % 4)
    return out


def test_recorded_numbers() -> None:
    (ten,) = datagrams(10)
    assert [seq_of(m) for m in split(ten)] == [*range(8), None]  # NLMSG_DONE closes it
    first, second = datagrams(13)
    assert [seq_of(m) for m in split(second)][:1] == [300]


def test_a_real_loss_is_still_counted() -> None:
    inp, out = plugin(group=13)
    for data in datagrams(13):
        inp.receive(data)
    flood = load_manifest(FIX)["flood"]
    assert inp.counters.get("lost") == flood["packets"] + flood["tail"] - len(out) == 290
    assert inp.counters.get("seq_resets") == 0


def test_numbering_started_over_after_billions_is_a_reset_not_a_loss() -> None:
    """After 3e9 packets the kernel's instance starts at 0 again: modulo 2**32 that is a
    jump forward of 1.29e9, which was counted as lost packets."""
    (ten,) = datagrams(10)
    inp, out = plugin(group=10)
    inp.receive(renumbered(ten, 3_000_000_000 - 8))
    assert inp.counters.get("seq_resets") == 1  # (the first number expected is 0)
    inp.receive(ten)  # 0..7 again
    assert inp.counters.get("seq_resets") == 2
    assert inp.counters.get("lost") == 0
    inp.receive(renumbered(ten, 8))  # resynchronised: 8 follows 7
    assert inp.counters.get("seq_resets") == 2 and inp.counters.get("lost") == 0
    assert inp.next_seq == 16 and len(out) == 24


def test_one_damaged_number_costs_two_resets_and_no_loss() -> None:
    (ten,) = datagrams(10)
    msgs = split(ten)
    msgs[3] = with_seq(msgs[3], 0x9E3779B9)
    damaged = b"".join(m + bytes(-len(m) % 4) for m in msgs)
    inp, out = plugin(group=10, seq_local=1)
    inp.receive(damaged)
    inp.receive(renumbered(ten, 8))
    assert inp.counters.get("seq_resets") == 2  # the jump there and the jump back
    assert inp.counters.get("lost") == 0
    assert [r["oob.seq.local"] for r in out] == [0, 1, 2, 0x9E3779B9, *range(4, 16)]


@pytest.mark.parametrize(("jump", "lost", "resets"), [
    (PLAUSIBLE_LOSS, PLAUSIBLE_LOSS, 0),
    (PLAUSIBLE_LOSS + 1, 0, 1),
    ((1 << 32) - 1, 0, 1),  # one step backwards
])
def test_the_plausible_bound(jump: int, lost: int, resets: int) -> None:
    (ten,) = datagrams(10)
    msgs = split(ten)
    msgs[1] = with_seq(msgs[1], 1 + jump)  # after 0, 1 is expected
    inp, _out = plugin(group=10)
    inp.receive(msgs[0])
    inp.receive(msgs[1])
    assert (inp.counters.get("lost"), inp.counters.get("seq_resets")) == (lost, resets)
    assert inp.next_seq == (2 + jump) & 0xFFFFFFFF
