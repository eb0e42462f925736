"""The output buffer on its own: ordering, drop-oldest accounting, the spool's order,
and the half-sent record that must never be dropped (a stream peer would get half a
line glued to the next one)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ulogpy.core.plugin import Counters
from ulogpy.delivery.buffer import MEMORY, SPOOL, Buffer
from ulogpy.delivery.spool import Spool, decode_text, encode_text


def _buffer(size: int, policy: str = "drop-oldest", spool: Spool | None = None) -> Buffer:
    return Buffer(size, policy, spool, Counters(), "t1:TEST")


def _hand(buffer: Buffer, items: list) -> None:
    for item in items:
        buffer.put(item)
    buffer.hand_over()


def _take_all(buffer: Buffer) -> list:
    out: list = []
    while True:
        with buffer.cond:
            source, items = buffer.take(7)
        if not items:
            return out
        items = buffer.rows(source, items)  # (a writer decodes the spool's lines unlocked)
        buffer.done(source, len(items))
        out.extend(items)


@given(st.lists(st.integers(min_value=0, max_value=40), max_size=30),
       st.integers(min_value=1, max_value=50))
@settings(max_examples=200, deadline=None)
def test_drop_oldest_keeps_the_newest_in_order_and_counts_the_rest(sizes: list[int],
                                                                   size: int) -> None:
    buffer = _buffer(size)
    total = 0
    for n in sizes:
        _hand(buffer, list(range(total, total + n)))
        total += n
    kept = _take_all(buffer)
    assert kept == list(range(total - len(kept), total))
    assert len(kept) == min(total, size)
    assert buffer.counters.get("dropped") == total - len(kept)


def test_a_half_sent_head_survives_drop_oldest() -> None:
    buffer = _buffer(4)
    _hand(buffer, ["a", "b", "c", "d"])
    with buffer.cond:
        _, items = buffer.take(4)
    buffer.give_back(MEMORY, items, keep_head=True)  # "a" went out in part
    _hand(buffer, ["e", "f", "g"])
    assert _take_all(buffer) == ["a", "e", "f", "g"]
    assert buffer.counters.get("dropped") == 3


def test_without_a_half_sent_head_the_oldest_goes() -> None:
    buffer = _buffer(4)
    _hand(buffer, ["a", "b", "c", "d"])
    with buffer.cond:
        _, items = buffer.take(4)
    buffer.give_back(MEMORY, items)
    _hand(buffer, ["e"])
    assert _take_all(buffer) == ["b", "c", "d", "e"]


def test_overflow_fills_memory_then_the_spool_and_nothing_overtakes_it(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", 1 << 20, encode_text, decode=decode_text)
    spool.open()
    buffer = _buffer(3, "spool", spool)
    _hand(buffer, [f"r{i}\n" for i in range(5)])   # r0-r2 in memory, r3-r4 on disk
    _hand(buffer, ["r5\n"])                          # spilling: goes to disk, after r4
    with buffer.cond:
        assert buffer.take(10) == (MEMORY, ["r0\n", "r1\n", "r2\n"])
    buffer.done(MEMORY, 3)
    with buffer.cond:
        source, items = buffer.take(10)
    assert (source, buffer.rows(source, items)) == (SPOOL, ["r3\n", "r4\n", "r5\n"])
    buffer.give_back(SPOOL, items)                  # not written: read again, same order
    assert _take_all(buffer) == ["r3\n", "r4\n", "r5\n"]
    assert buffer.counters.get("spooled") == 3 and buffer.counters.get("replayed") == 3
    assert buffer.counters.get("dropped") == 0
    with buffer.cond:
        assert buffer.take(10) == (MEMORY, [])     # caught up: memory again
    _hand(buffer, ["r6\n"])
    assert _take_all(buffer) == ["r6\n"]
    spool.close()


def test_a_corrupt_spool_line_is_counted_skipped_and_committed_past(tmp_path: Path) -> None:
    """The writer decodes the spool's lines after the buffer's lock (`rows`): a line that
    does not decode is counted `corrupt` and left out, and committing the rows written
    moves the spool past r2 too (a commit position one row short would replay r2)."""
    spool = Spool(tmp_path / "s", 1 << 20, encode_text, decode=decode_text)
    spool.open()
    buffer = _buffer(1, "spool", spool)
    _hand(buffer, ["r0\n", "r1\n", "r2\n"])              # r0 in memory, r1-r2 on disk
    spool.flush()
    (segment,) = (tmp_path / "s").glob("*.spool")
    good = segment.read_bytes()
    first = good.index(b"\n") + 1
    segment.write_bytes(good[:first] + b"{not json\n" + good[first:])  # between r1 and r2
    spool.sizes[int(segment.stem)] = segment.stat().st_size
    spool.rewind()
    assert _take_all(buffer) == ["r0\n", "r1\n", "r2\n"]
    assert spool.corrupt == 1
    spool.close()
    again = Spool(tmp_path / "s", 1 << 20, encode_text, decode=decode_text)
    assert again.open() == 0
    again.close()


def test_a_full_spool_keeps_the_head_of_a_batch_and_counts_the_rest(tmp_path: Path) -> None:
    line = len(encode_text("r0\n"))
    spool = Spool(tmp_path / "s", 3 * line, encode_text, decode=decode_text)
    spool.open()
    buffer = _buffer(1, "spool", spool)
    _hand(buffer, ["m\n"])                               # memory full
    _hand(buffer, [f"r{i}\n" for i in range(5)])         # 3 fit on disk, 2 do not
    assert buffer.counters.get("spooled") == 3 and buffer.counters.get("dropped") == 2
    assert _take_all(buffer) == ["m\n", "r0\n", "r1\n", "r2\n"]
    spool.close()
