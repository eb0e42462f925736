"""Text lines from a layout table: a printer's line written down as data, not code.

ulogd's text printers (PRINTFLOW) build each line from a fixed sequence of
labels, values and branches on a key's value.  A *layout* is that sequence as
a tuple of steps:

* ``(TEXT, s)``: the literal `s`;
* ``(FIELD, key, prefix, suffix)``: `prefix`, the key's value as an f-string
  shows it (``format(value, "")``) and `suffix`, all only when the record
  holds the key with a value other than None;
* ``(SWITCH, key, cases, other)``: the steps of ``cases[value]`` (the value
  None when the key is absent), else the steps of `other`; `cases` is a dict,
  so its look-up (hash, then equality) picks the branch.

Two interpreters take the same table: `python_line` generates a Python
function from it (the pure path), and `compiled_line` hands it to
``ulogpy._fastpath.TextLine``, which walks it in C.  Both give the same text
for every record (tests/unit/test_textline.py).  `text_line` picks the
compiled one where it is built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ulogpy import fastpath
from ulogpy.core.codegen import define
from ulogpy.render.jsontext import fstring_literal

TEXT, FIELD, SWITCH = 0, 1, 2

Step = tuple[Any, ...]
Layout = tuple[Step, ...]
Line = Callable[[dict], str]
Steps = Layout | list[Step]


def text(literal: str) -> Step:
    return (TEXT, literal)


def field(key: str, prefix: str, suffix: str = " ") -> Step:
    return (FIELD, key, prefix, suffix)


def switch(key: str, cases: Mapping[Any, Steps], other: Steps = ()) -> Step:
    return (SWITCH, key, {value: tuple(steps) for value, steps in cases.items()}, tuple(other))


#: How deep switches may nest (the compiled walker's limit too).
DEPTH_MAX = 32
_SHAPES = {TEXT: (str,), FIELD: (str, str, str), SWITCH: (str, dict, tuple)}


def check(layout: Layout, depth: int = 0) -> None:
    """Refuse what is not a layout (ValueError), as the compiled walker refuses it."""
    if not isinstance(layout, tuple) or depth > DEPTH_MAX:
        raise ValueError("text layout: switches nested too deep" if depth > DEPTH_MAX
                         else "text layout: a tuple of steps")
    for step in layout:
        kinds = (_SHAPES.get(step[0]) if isinstance(step, tuple) and step
                 and isinstance(step[0], int) else None)
        if kinds is None or len(step) != 1 + len(kinds) or not all(
                isinstance(part, kind) for part, kind in zip(step[1:], kinds, strict=True)):
            raise ValueError(f"text layout: not a step: {step!r}")
        try:  # (the literals are written as UTF-8; keys are only looked up)
            [part.encode() for part in step[1 if step[0] == TEXT else 2:] if isinstance(part, str)]
        except UnicodeError:
            raise ValueError(f"text layout: not a step: {step!r}") from None
        if step[0] == SWITCH:
            for steps in (*step[2].values(), step[3]):
                check(steps, depth + 1)


def python_line(layout: Layout, label: str = "text line") -> Line:
    """The layout as a generated Python function ``line(record) -> str``."""
    check(layout)
    scope: dict[str, Any] = {}
    lines = ["def line(record):", "    get = record.get", "    out = []",
             "    put = out.append"]

    def constant(value: object) -> str:
        name = f"_c{len(scope)}"
        scope[name] = value
        return name

    def emit(steps: Layout, indent: str) -> None:
        start = len(lines)
        for step in steps:
            if step[0] == TEXT:
                lines.append(f"{indent}put({step[1]!r})")
            elif step[0] == FIELD:
                _, key, prefix, suffix = step
                lines.append(f"{indent}v = get({key!r})")
                lines.append(f"{indent}if v is not None:")
                lines.append(f"{indent}    put(f'{fstring_literal(prefix)}{{v}}"
                             f"{fstring_literal(suffix)}')")
            else:
                _, key, cases, other = step
                branches = list(cases.values())
                index = constant({value: i + 1 for i, value in enumerate(cases)})
                lines.append(f"{indent}b = {index}.get(get({key!r}), 0)")
                for i, branch in enumerate([other, *branches]):
                    lines.append(f"{indent}{'if' if i == 0 else 'elif'} b == {i}:")
                    emit(branch, indent + "    ")
        if len(lines) == start:
            lines.append(f"{indent}pass")

    emit(layout, "    ")
    lines.append("    return ''.join(out)")
    return define(lines, "line", label, scope)


def compiled_line(layout: Layout, fallback: Line) -> Line | None:
    """The layout walked in C, or None where the extension is not built.

    `fallback` (the pure line) writes what C hands back: a value whose text is not
    valid UTF-8, or a record that is no dict.
    """
    if fastpath.compiled is None:
        return None
    return fastpath.compiled.TextLine(layout, fallback)


def text_line(layout: Layout, label: str = "text line") -> Line:
    """The fastest line function for `layout` here: compiled, else generated Python."""
    pure = python_line(layout, label)
    return compiled_line(layout, pure) or pure
