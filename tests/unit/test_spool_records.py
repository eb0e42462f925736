"""A spooled record comes back as it went in: the wanted keys, numbers and strings as
they were, every bytes-like value as bytes, anything else left out.  The compiled
encode and decode give what the Python ones give, errors included."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ulogpy.delivery import spool
from ulogpy.delivery.spool import decode_record, encode_record
from ulogpy.fastpath import compiled

VALUES = st.one_of(
    st.integers(-(2**63), 2**64 - 1), st.booleans(), st.text(max_size=8),
    st.binary(max_size=20), st.binary(max_size=8).map(bytearray),
    st.binary(max_size=8).map(memoryview), st.floats(allow_nan=False), st.none(),
)
RECORDS = st.dictionaries(st.sampled_from([f"k{i}" for i in range(12)] + ["ct", "a.b.str"]),
                          VALUES, max_size=14)


def _expected(record: dict, keys) -> dict:
    out = {}
    for name, value in record.items():
        if keys is not None and name not in keys:
            continue
        if isinstance(value, (bytes, bytearray, memoryview)):
            out[name] = bytes(value)
        elif isinstance(value, (int, str)):
            out[name] = value
    return out


@settings(max_examples=400, deadline=None)
@given(RECORDS, st.one_of(st.none(), st.frozensets(st.sampled_from(["k1", "k2", "ct"]))))
def test_records_round_trip_through_the_spool(record: dict, keys) -> None:
    line = encode_record(record, keys)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    back = decode_record(line)
    want = _expected(record, keys)
    assert back == want and list(back) == list(want)


# -- the compiled twins (`_fastpath.spool_values`, `spool_unhex`) -------------------------

class _Int(int):
    pass


class _Str(str):
    pass


TWIN_VALUES = st.one_of(VALUES, st.integers(-5, 5).map(_Int), st.text(max_size=4).map(_Str))
TWIN_RECORDS = st.dictionaries(st.sampled_from([f"k{i}" for i in range(12)] + ["ct"]),
                               TWIN_VALUES, max_size=14)
#: A spool line's lists as a damaged or hand-edited file may hold them.
ODD_LISTS = st.one_of(
    st.binary(max_size=6).map(lambda b: [b.hex().upper()]),
    st.binary(min_size=1, max_size=6).map(lambda b: [b.hex()[:-1]]),
    st.binary(min_size=2, max_size=6).map(lambda b: [b.hex()[:2] + " " + b.hex()[2:]]),
    st.binary(min_size=2, max_size=6).map(lambda b: [b.hex()[:2] + "  " + b.hex()[2:]]),
    st.just(["zz"]), st.just([]), st.just(["00", "11"]), st.just([1]), st.just(["é0"]),
    st.just(["\uff10\uff10"]),
)


def _outcome(fn, *args):
    try:
        return "ok", fn(*args)
    except Exception as exc:  # noqa: BLE001 - the class is what is compared
        return "raised", type(exc)


@pytest.mark.skipif(compiled is None, reason="the fast path is not built")
@settings(max_examples=400, deadline=None)
@given(TWIN_RECORDS, st.one_of(st.none(), st.frozensets(st.sampled_from(["k1", "k2", "ct"]))))
def test_compiled_spool_values_are_the_python_ones(record: dict, keys) -> None:
    got = compiled.spool_values(record, keys)
    want = spool.python_spool_values(record, keys)
    if got is None:  # a subclass or a bytes-like value: the Python way decides
        assert any(type(v) not in (int, str, bytes) and isinstance(
            v, (int, str, bytes, bytearray, memoryview)) for v in record.values())
        return
    assert got == want and list(got) == list(want)
    assert [type(v) for v in got.values()] == [type(v) for v in want.values()]
    assert _outcome(encode_record, record, keys) == _outcome(
        lambda: orjson.dumps(want, option=orjson.OPT_APPEND_NEWLINE))


@pytest.mark.skipif(compiled is None, reason="the fast path is not built")
@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from([f"k{i}" for i in range(8)]),
                       st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=4), ODD_LISTS,
                                 st.binary(max_size=6).map(lambda b: [b.hex()])),
                       max_size=8),
       st.booleans())
def test_compiled_unhex_decodes_what_the_python_way_decodes(data: dict, as_list) -> None:
    line = orjson.dumps([data] if as_list else data)
    got = _outcome(decode_record, line)
    want = _outcome(lambda: spool.python_unhex(orjson.loads(line)))
    assert got == want
    if got[0] == "ok":
        assert [type(v) for v in got[1].values()] == [type(v) for v in want[1].values()]
