"""Text lines from layout tables: the compiled walker and the generated Python agree.

`ulogpy.render.textline` gives one layout table two interpreters.  These
properties check, on PRINTFLOW's and PRINTPKT's tables with recorded records
(conntrack events; the packets behind ulogd's golden lines) and with odd
values on any key, and on random layouts with random records, that both give
the same str or raise the same error (class and message), and that both
refuse the same malformed tables.  The printers' bytes against ulogd's are the
job of the live differential tests and of tests/unit/test_printpkt.py.
"""

from __future__ import annotations

import gc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ulogpy.plugins.filter import ip2str as ip2str_module
from ulogpy.plugins.filter import printflow, printpkt

from tests.unit.test_fast_paths import _messages
from tests.unit.test_printpkt import _golden_pairs, record_from_json
from ulogpy import fastpath
from ulogpy.netlink import conntrack
from ulogpy.render import textline
from ulogpy.render.textline import (
    CALL,
    FIELD,
    PICK,
    PRESENT,
    SWITCH,
    TEXT,
    WHEN,
    call,
    field,
    pick,
    present,
    switch,
    text,
    when,
)

pytestmark = pytest.mark.skipif(fastpath.compiled is None,
                                reason=f"compiled fast path absent: {fastpath.reason}")


def _outcome(line, record) -> object:
    try:
        return line(record)
    except Exception as exc:  # noqa: BLE001 - class and message are what is compared
        return (type(exc), str(exc))


def _both(layout):
    pure = textline.python_line(layout)
    return textline.compiled_line(layout, pure), pure


def _records() -> list[dict]:
    """The recorded conntrack events as PRINTFLOW receives them (after IP2STR)."""
    convert = ip2str_module.IP2STR.__new__(ip2str_module.IP2STR)
    out = []
    for message in _messages():
        event = conntrack.decode_ct(message)
        if event is not None:
            record = dict(event.values, **{"ct.event": event.event})
            convert.python_interp(record)
            out.append(record)
    return out


RECORDS = _records()
PACKETS = [record_from_json(json_line) for json_line, _logemu in _golden_pairs()]
FAST, PURE = _both(printflow.LAYOUT)
#: Each printer: its line functions (compiled, pure), its input keys, its records.
PRINTERS = {
    "PRINTFLOW": (FAST, PURE, printflow.PRINTFLOW.input_keys, RECORDS),
    "PRINTPKT": (*_both(printpkt.LAYOUT), printpkt.PRINTPKT.input_keys, PACKETS),
}


def test_the_printers_use_the_compiled_line() -> None:
    assert isinstance(printflow._line, fastpath.compiled.TextLine)
    assert isinstance(printpkt.format_packet, fastpath.compiled.TextLine)


def test_recorded_records_give_the_same_printflow_lines() -> None:
    protocols = set()
    for record in RECORDS:
        line = FAST(record)
        assert isinstance(line, str) and line == PURE(record)
        protocols.add(record.get("orig.ip.protocol"))
    assert {1, 6, 17} <= protocols  # (the fixtures cover the switch's branches)
    long = dict(RECORDS[0], **{"orig.ip.saddr.str": "x" * 5000})  # past the 2 KiB buffer
    assert FAST(long) == PURE(long) and len(FAST(long)) > 5000


def test_golden_packets_give_the_same_printpkt_lines() -> None:
    fast, pure, _keys, packets = PRINTERS["PRINTPKT"]
    assert len(packets) > 20
    for record in packets:
        line = fast(record)
        assert isinstance(line, str) and line == pure(record)


TEXTS = st.text(st.characters(blacklist_categories=()), max_size=10)  # surrogates too


class Odd:
    """A value whose text is its own `__format__` (and which may fail)."""

    def __init__(self, text: str | None) -> None:
        self.text = text

    def __format__(self, spec: str) -> str:
        if self.text is None:
            raise RuntimeError("no text")
        return self.text


VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.sampled_from([1, 6, 17, 50]),
    TEXTS, st.binary(max_size=4), st.floats(allow_nan=False),
    st.builds(Odd, st.none() | TEXTS), st.just([1]),
)


@pytest.mark.parametrize("printer", sorted(PRINTERS))
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_record_gives_the_same_line(printer: str, data: st.DataObject) -> None:
    """Odd values on any key: surrogates (handed back to the pure line), huge and negative
    numbers, bools, floats, bytes, an unhashable protocol, a failing __format__."""
    fast, pure, keys, records = PRINTERS[printer]
    record = dict(data.draw(st.sampled_from(records)))
    for key in data.draw(st.lists(st.sampled_from([k.name for k in keys]), max_size=6)):
        if data.draw(st.booleans()):
            record[key] = data.draw(VALUES)
        else:
            record.pop(key, None)
    assert _outcome(fast, record) == _outcome(pure, record)


NAMES = st.sampled_from(["a", "b", "c", "\udcff"])


def _odd_text(record: dict) -> object:
    """A CALL step's function: a str, or something else (the join's error), or raises."""
    value = record.get("a")
    if value == 6:
        raise KeyError("six")
    return value if isinstance(value, (str, int)) else "?"


def _layouts(depth: int = 3) -> st.SearchStrategy:
    literal = st.text(max_size=3)
    defaults = st.none() | st.integers(-3, 300) | st.just("d")
    step = st.one_of(
        st.builds(text, TEXTS),
        st.builds(field, NAMES, literal, literal, st.sampled_from(["", "x", "08x", ">3"]),
                  defaults),
        st.builds(pick, NAMES, st.lists(literal, min_size=1, max_size=5), st.integers(0, 9),
                  st.integers(0, 3)),
        st.just(call(_odd_text)),
    )
    if depth > 0:
        inner = st.deferred(lambda: _layouts(depth - 1))
        step = step | st.one_of(
            st.builds(switch, NAMES, st.dictionaries(VALUES.filter(_hashable), inner,
                                                     max_size=3), inner, defaults),
            st.builds(present, st.lists(NAMES, min_size=1, max_size=2), inner, inner),
            st.builds(when, NAMES, inner),
        )
    return st.lists(step, max_size=4).map(tuple)


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


# (each example compiles a function: fewer of them)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_layout_gives_the_same_line(data: st.DataObject) -> None:
    layout = data.draw(_layouts())
    try:
        pure = textline.python_line(layout)
    except ValueError as exc:  # a literal that is not UTF-8: both refuse it
        with pytest.raises(ValueError) as refused:
            fastpath.compiled.TextLine(layout, print)
        assert str(refused.value) == str(exc)
        return
    fast = textline.compiled_line(layout, pure)
    for _ in range(3):
        record = data.draw(st.dictionaries(NAMES, VALUES, max_size=4))
        assert _outcome(fast, record) == _outcome(pure, record)


class Record(dict):
    """No exact dict: the compiled line hands it to the pure one."""

    def get(self, key, default=None):
        return "overridden" if key == "a" else super().get(key, default)


def test_a_record_that_is_no_dict_takes_the_pure_line() -> None:
    fast, pure = _both((field("a", "A="), text("!")))
    assert fast(Record(a=1)) == pure(Record(a=1)) == "A=overridden !"
    assert fast({"a": 1}) == "A=1 !"


@pytest.mark.parametrize("layout", [
    [(TEXT, "x")],                                      # a list, not a tuple
    ((TEXT,),),                                         # too short
    ((9, "x"),),                                        # no such step
    ((1.0, "k", "", "", "", None),),                    # the step kind is no int
    ((FIELD, 3, "", "", "", None),),                    # a key that is no str
    ((FIELD, "k", "\udcff", "", "", None),),            # a literal that is not UTF-8
    ((FIELD, "k", "", "", 5, None),),                   # a format spec that is no str
    ((FIELD, "k", "", ""),),                            # the old, shorter FIELD
    ((SWITCH, "k", {1: [(TEXT, "x")]}, (), None),),     # a branch that is no tuple
    ((SWITCH, "k", [], (), None),),                     # cases that are no dict
    ((PRESENT, (), (), ()),),                           # no keys to test
    ((PRESENT, ("k", 1), (), ()),),                     # a key that is no str
    ((WHEN, "k", [(TEXT, "x")]),),                      # a branch that is no tuple
    ((PICK, "k", 0, 0, 2, ("a", "b")),),                # a mask past the texts
    ((PICK, "k", 0, -1, 0, ("a",)),),                   # a negative shift
    ((PICK, "k", 0, 2**64, 0, ("a",)),),                # a shift past a C long
    ((PICK, "k", 0, 0, 0, (b"a",)),),                   # a text that is no str
    ((CALL, "not callable"),),                          # a function that is none
    ("x",),                                             # a step that is no tuple
])
def test_a_malformed_layout_is_refused_alike(layout) -> None:
    with pytest.raises(ValueError) as pure:
        textline.python_line(layout)
    with pytest.raises(ValueError) as fast:
        fastpath.compiled.TextLine(layout, print)
    assert str(fast.value) == str(pure.value)


def test_switches_nested_too_deep_are_refused_alike() -> None:
    layout: tuple = (text("x"),)
    for _ in range(textline.DEPTH_MAX + 1):
        layout = (switch("k", {}, layout),)
    with pytest.raises(ValueError, match="nested too deep"):
        textline.python_line(layout)
    with pytest.raises(ValueError, match="nested too deep"):
        fastpath.compiled.TextLine(layout, print)


def test_the_collector_sees_what_a_line_holds() -> None:
    """A CALL's function (whose module holds the line) and a default may close a cycle:
    the garbage collector must see them, as it sees the fallback."""
    def piece(record: dict) -> str:
        return ""

    default = ("a default",)
    line = fastpath.compiled.TextLine((call(piece), field("k", "", default=default)), print)
    held = gc.get_referents(line)
    assert piece in held and print in held and any(obj is default for obj in held)
