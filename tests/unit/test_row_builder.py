"""The generated row builder gives what rendering column by column gives, for every
dialect and any value (it inlines the common cases of the renderings)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ulogpy.core.keys import KeyType
from ulogpy.db import render

DIALECTS = [render.pg_renderer, render.my_renderer, render.sqlite_renderer,
            render.dbi_sqlite_renderer]
COLUMNS = [(f"k.{t.name.lower()}", t) for t in KeyType]
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                   st.text(max_size=6), st.binary(min_size=0, max_size=16))


def _reference(columns, record):
    out = []
    for key, rend in columns:
        value = record.get(key)
        try:
            out.append(None if value is None or rend is None else rend(value))
        except Exception as exc:  # noqa: BLE001 - the class is what is compared
            return type(exc)
    return tuple(out)


def _built(build, record):
    try:
        return build(record)
    except Exception as exc:  # noqa: BLE001
        return type(exc)


@pytest.mark.parametrize("dialect", DIALECTS, ids=["pg", "mysql", "sqlite", "dbi-sqlite"])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_generated_rows_equal_column_by_column_rendering(dialect, data) -> None:
    columns = [(key, dialect(t)) for key, t in COLUMNS]
    build = render.row_builder(columns)
    record = {key: data.draw(VALUES) for key, _t in COLUMNS if data.draw(st.booleans())}
    got, want = _built(build, record), _reference(columns, record)
    assert got == want
    if isinstance(want, tuple):  # same types too: 1 and True, '1' and 1 differ in a row
        assert [type(v) for v in got] == [type(v) for v in want]
