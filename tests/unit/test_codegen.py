"""Generated code is visible: tracebacks and `inspect.getsource` show its lines.

Every generated hot path (conntrack and NFLOG shapes, attribute layouts, packet
headers, stack chains) comes through `ulogpy.core.codegen.define`; without the
linecache entry a traceback out of one shows a file name and no line at all.
"""

from __future__ import annotations

import inspect
import traceback
from pathlib import Path

import pytest

from tests.fixtures.recorded import load_records
from ulogpy.core.codegen import define
from ulogpy.netlink import attrs, conntrack, nlsock
from ulogpy.packet import ipv4

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "conntrack"


def test_traceback_shows_the_generated_line() -> None:
    half = define(["def half(x):", "    y = x + 1", "    return 10 // (y - y)"], "half", "test")
    with pytest.raises(ZeroDivisionError) as info:
        half(3)
    last = traceback.extract_tb(info.tb)[-1]
    assert last.name == "half" and last.lineno == 3
    assert last.line == "return 10 // (y - y)"
    assert last.filename.startswith("<ulogpy test #")


def test_getsource_gives_the_generated_text_and_names_are_unique() -> None:
    one = define("def f():\n    return 1\n", "f", "same label")
    two = define("def f():\n    return 2\n", "f", "same label")
    assert (one(), two()) == (1, 2)
    assert inspect.getsource(one) == "def f():\n    return 1\n"
    assert inspect.getsource(two) == "def f():\n    return 2\n"
    assert one.__code__.co_filename != two.__code__.co_filename


def test_scope_is_the_functions_globals_and_is_copied() -> None:
    scope = {"K": 5}
    f = define("def f(x):\n    return x * K\n", "f", "scope", scope)
    scope["K"] = 6
    assert f(2) == 10
    assert "f" not in scope


def test_real_generators_are_visible() -> None:
    """A packet header decoder, a layout setter and a learnt conntrack shape."""
    header = inspect.getsource(ipv4._ipv4)
    assert header.startswith("def decode_ipv4(buf, off, out):") and "_unpack(buf, off)" in header

    layouts = attrs.compile_layouts(
        {1: attrs.be16("a"), 2: attrs.be32("b")}, [(1, 2)])
    (_mask, _image, setter), = layouts[16]
    assert "out['a'], out['b'], = _unpack(buf, pos)" in inspect.getsource(setter)
    with pytest.raises(Exception) as info:  # struct.error: the buffer is too short
        setter({}, b"\0" * 4, 0)
    assert traceback.extract_tb(info.tb)[-1].line == "out['a'], out['b'], = _unpack(buf, pos)"

    decoder = conntrack.CtDecoder(compiled=False)  # the compiled walker learns nothing
    for rec in load_records(FIX):
        for off, mlen, *_ in nlsock.iter_messages(rec["data"]):
            decoder.decode(rec["data"], off, mlen)
    fills = [fill for shapes in decoder.shapes.values() for _m, _i, fill in shapes]
    assert fills
    for fill in fills:
        text = inspect.getsource(fill)
        assert text.startswith("def fill(buf, start, event, mtype, mflags):")
        assert "_CtEvent(event, mtype, mflags" in text
