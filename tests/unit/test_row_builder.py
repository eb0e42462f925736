"""The row builders give what rendering column by column gives, for every dialect and
any value (they inline the common cases of the renderings): the generated Python one
and the compiled one (`_fastpath.RowBuild`), which must also give the same errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ulogpy.core.keys import KeyType
from ulogpy.db import render
from ulogpy.fastpath import compiled

DIALECTS = [render.pg_renderer, render.my_renderer, render.sqlite_renderer,
            render.dbi_sqlite_renderer]
COLUMNS = [(f"k.{t.name.lower()}", t) for t in KeyType]
#: The edges of the as-is tests too: SQLite's 64-bit range, NUL in a string, subclasses.
EDGES = st.sampled_from([2**63 - 1, -(2**63 - 1), -(2**63), 2**63, "a\0b", "\0", "é\0",
                         1.5, float("nan"), bytearray(b"\x01\x02\x03\x04")])
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                   st.text(max_size=6), st.binary(min_size=0, max_size=16), EDGES)
BUILDERS = ["python", pytest.param("compiled", marks=pytest.mark.skipif(
    compiled is None, reason="the fast path is not built"))]


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
        return type(exc), str(exc)


def _builder(kind, columns):
    if kind == "python":
        return render.python_row_builder(columns)
    build = render.row_builder(columns)
    assert isinstance(build, compiled.RowBuild)
    return build


@pytest.mark.parametrize("kind", BUILDERS)
@pytest.mark.parametrize("dialect", DIALECTS, ids=["pg", "mysql", "sqlite", "dbi-sqlite"])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_built_rows_equal_column_by_column_rendering(kind, dialect, data) -> None:
    columns = [(key, dialect(t)) for key, t in COLUMNS]
    build = _builder(kind, columns)
    record = {key: data.draw(VALUES) for key, _t in COLUMNS if data.draw(st.booleans())}
    got, want = _built(build, record), _reference(columns, record)
    if not isinstance(want, tuple):  # a rendering failed: the same error either way
        assert got[0] is want
        assert got == _built(render.python_row_builder(columns), record)
        return
    assert got == want
    # same types too: 1 and True, '1' and 1 differ in a row
    assert [type(v) for v in got] == [type(v) for v in want]


@pytest.mark.skipif(compiled is None, reason="the fast path is not built")
def test_compiled_rows_of_a_dict_subclass_come_from_the_python_builder() -> None:
    columns = [(key, render.sqlite_renderer(t)) for key, t in COLUMNS]

    class Record(dict):
        def get(self, key, default=None):  # the Python builder reads through get
            return "seen" if key == "k.string" else super().get(key, default)

    row = render.row_builder(columns)(Record({"k.uint32": 7}))
    assert row == render.python_row_builder(columns)(Record({"k.uint32": 7}))
    assert "seen" in row and 7 in row
