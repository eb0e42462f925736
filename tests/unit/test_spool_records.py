"""A spooled record comes back as it went in: the wanted keys, numbers and strings as
they were, every bytes-like value as bytes, anything else left out."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ulogpy.delivery.spool import decode_record, encode_record

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
