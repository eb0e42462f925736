"""A file output's spool holds rendered lines, and gives back the very same text.

With `queue_policy=spool` a file output's overflow is its rendered lines, which
may hold anything a packet prefix or an interface name can: a newline inside
the line, quotes and backslashes, UTF-8, and bytes that are no UTF-8 at all
(kept as surrogates until the file sink writes them back as the same bytes).
"""

from __future__ import annotations

from ulogpy.delivery.spool import Spool, decode_text, encode_text

LINES = [
    'Nov 27 00:01:02 fw IN=eth0 OUT= MAC=52:54:00:12:34:56 SRC=10.0.0.1 PROTO=UDP\n',
    'Nov 27 00:01:02 fw prefix with "quotes" and \\backslash\\ and a\nnewline IN=lo\n',
    '{"timestamp": "2026-11-27T00:01:02+0000", "oob.prefix": "caf\u00e9 \u2603"}\n',
    b"raw \xff\xfe bytes \xc3(\n".decode("utf-8", "surrogateescape"),
    "",
]


def test_lines_round_trip_through_the_spool_and_a_restart(tmp_path) -> None:
    spool = Spool(tmp_path / "json1", 1 << 20, encode_text, decode=decode_text)
    assert spool.open() == 0
    for line in LINES:
        spool.append(line)
    spool.flush()
    spool.close()

    again = Spool(tmp_path / "json1", 1 << 20, encode_text, decode=decode_text)
    assert again.open() == len(LINES)  # a restart finds them, in order
    got = again.read(100)
    assert got == LINES
    assert [line.encode("utf-8", "surrogateescape") for line in got] == \
        [line.encode("utf-8", "surrogateescape") for line in LINES]
    again.commit(len(got))
    assert again.read(100) == []
    again.close()


def test_each_line_is_one_spool_line() -> None:
    for line in LINES:
        encoded = encode_text(line)
        assert encoded.endswith(b"\n") and encoded.count(b"\n") == 1
        assert decode_text(encoded) == line
