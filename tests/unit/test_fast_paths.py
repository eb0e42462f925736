"""The hot path's generated shortcuts give exactly what the generic code gives.

The pure-Python conntrack decoder learns message layouts and decodes a known layout
with one struct call; JSON compiles one render function per key set (or, where
`ulogpy._fastpath` is built, writes lines in C: tests/unit/test_fastpath.py compares
that with both).  Both must agree with
the generic table walker and the field-by-field renderer on real kernel messages,
on damaged copies of them, and on records whose strings need escaping.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.fixtures.recorded import load_records
from ulogpy.config.load import load_config
from ulogpy.core.stack import build_pipeline
from ulogpy.netlink import conntrack, nlsock
from ulogpy.netlink.attrs import MalformedMessage

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "conntrack"
SLOTS = ("event", "msg_type", "flags", "family", "values", "start_ns", "stop_ns", "event_ns",
         "tuple_key", "zone", "status", "icmp_id", "icmpv6_type", "icmpv6_code")


def _messages() -> list[bytes]:
    out = []
    for rec in load_records(FIX):
        data = rec["data"]
        out += [data[off:off + mlen] for off, mlen, *_ in nlsock.iter_messages(data)]
    return out


def _decode(message: bytes, decoder: conntrack.CtDecoder):
    try:
        ev = decoder.decode(message)
    except MalformedMessage:
        return "malformed"
    return None if ev is None else tuple(getattr(ev, s) for s in SLOTS)


def _both_ways(messages: list[bytes]) -> tuple[list, list]:
    plain = conntrack.CtDecoder(learn=False, compiled=False)
    walker = [_decode(m, plain) for m in messages]
    assert not plain.shapes
    fast = conntrack.CtDecoder(compiled=False)
    for m in messages:  # learn the layouts, then decode through them
        _decode(m, fast)
    assert fast.shapes
    return walker, [_decode(m, fast) for m in messages]


def test_learnt_layouts_decode_like_the_walker() -> None:
    messages = _messages()
    walker, fast = _both_ways(messages)
    assert len(messages) > 50 and walker == fast


def test_damaged_messages_decode_like_the_walker() -> None:
    rng = random.Random(7)
    damaged = []
    for m in _messages():
        for _ in range(20):
            b = bytearray(m)
            for _ in range(rng.randint(1, 3)):
                b[rng.randrange(16, len(b))] = rng.randrange(256)
            damaged.append(bytes(b))
    walker, fast = _both_ways(damaged)
    assert walker == fast


@pytest.fixture
def json_output(tmp_path: Path):
    conf = tmp_path / "j.conf"
    conf.write_text("[global]\nstack=ct1:NFCT,ip2str1:IP2STR,json1:JSON\n[ct1]\n"
                    f'[json1]\nfile="{tmp_path}/j.json"\ntimestamp=0\n')
    pipeline = build_pipeline(load_config(str(conf)))
    ip2str, out = pipeline.stacks[0].filters[0], pipeline.stacks[0].output
    lines: list[str] = []
    return ip2str, out, lines


def test_compiled_json_lines_equal_the_field_by_field_ones(json_output) -> None:
    ip2str, out, lines = json_output
    records = []
    for m in _messages():
        ev = conntrack.decode_ct(m)
        if ev is not None:
            rec = dict(ev.values, **{"ct.event": ev.event, "flow.start.sec": 1795729219})
            ip2str.interp(rec)
            records.append(rec)
    odd = dict(records[0])
    odd["reply.ip.saddr.str"] = 'a "quoted" \\ name\n\u00e9\x01'
    records.append(odd)
    for rec in records * 2:  # the second time through the compiled render functions
        lines.append(out.render(rec))
    expected = [out._generic(rec) for rec in records * 2]
    assert len(records) > 50 and lines == expected
    assert '\\"quoted\\" \\\\ name\\n\u00e9\\u0001' in lines[len(records) - 1]
