"""Reading the spool gives every row once, in order, across segments, partial commits,
rewinds and restarts, whatever the size of its lines against the read block.

A model (the rows appended, the committed position, the read position) checked against
the real spool on random sequences of operations, with small segments and a small read
block (`READ_BYTES`), so that lines longer than a block and reads that cross segment
ends are common.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ulogpy.delivery import spool as spool_module
from ulogpy.delivery.spool import Spool, decode_text, encode_text

ROWS = st.text(alphabet="ab\n\"\\é", max_size=90)
OPS = st.lists(st.one_of(
    st.tuples(st.just("append"), st.lists(ROWS, min_size=1, max_size=6)),
    st.tuples(st.just("read"), st.integers(1, 7)),
    st.tuples(st.just("commit"), st.integers(0, 8)),
    st.tuples(st.just("rewind")),
    st.tuples(st.just("restart")),
), max_size=30)


def _open(directory: Path) -> Spool:
    spool = Spool(directory, 1 << 30, encode_text, segment_bytes=200, decode=decode_text)
    spool.open()
    return spool


@pytest.mark.parametrize("read_bytes", [16, 64, 1 << 20])
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # (monkeypatch:
# the same READ_BYTES for every example; the directory is new each time)
@given(ops=OPS)
def test_rows_come_back_once_and_in_order(tmp_path_factory, monkeypatch, read_bytes,
                                          ops) -> None:
    monkeypatch.setattr(spool_module, "READ_BYTES", read_bytes)
    monkeypatch.setattr(spool_module, "LINE_GUESS", 8)  # reads of a few rows: small too
    directory = tmp_path_factory.mktemp("spool") / "out"
    spool = _open(directory)
    rows: list[str] = []   # every row appended, in order
    committed = 0          # rows before this are gone for good
    at = 0                 # the read position
    last = (0, 0)          # the last read: its first row and how many it gave
    try:
        for op in ops:
            if op[0] == "append":
                for row in op[1]:
                    spool.append(row)
                rows += op[1]
            elif op[0] == "read":
                got = spool.read(op[1])
                assert got == rows[at:at + op[1]]
                last, at = (at, len(got)), at + len(got)
            elif op[0] == "commit":
                count = min(op[1], last[1])
                spool.commit(count)
                if count:  # (a second commit of the same read commits nothing here)
                    committed = last[0] + count
                    if count < last[1]:  # the rest of the read comes again
                        at = committed
                    last = (committed, 0)
            elif op[0] == "rewind":
                spool.rewind()
                at, last = committed, (committed, 0)
            elif op[0] == "restart":
                spool.close()
                spool = _open(directory)
                at, last = committed, (committed, 0)
        spool.rewind()
        assert spool.read(10_000) == rows[committed:]
        spool.close()
        again = _open(directory)
        assert again.read(10_000) == rows[committed:]  # what a restart finds
        spool = again
    finally:
        spool.close()
