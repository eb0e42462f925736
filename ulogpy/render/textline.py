"""Text lines from a layout table: a printer's line written down as data, not code.

ulogd's text printers (PRINTFLOW, PRINTPKT) build each line from a fixed
sequence of labels, values and branches on a key's value.  A *layout* is that
sequence as a tuple of steps; "the value" of a key is the record's, or the
step's `default` when the record does not hold the key:

* ``(TEXT, s)``: the literal `s`;
* ``(FIELD, key, prefix, suffix, spec, default)``: `prefix`, the value as
  ``format(value, spec)`` gives it, and `suffix`; with `default` None, all only
  when the value is not None;
* ``(SWITCH, key, cases, other, default)``: the steps of ``cases[value]``,
  else those of `other`; `cases` is a dict, so its look-up (hash, then
  equality) picks the branch;
* ``(PRESENT, keys, then, otherwise)``: the steps of `then` when every key
  holds a value other than None, else those of `otherwise`;
* ``(WHEN, key, then)``: the steps of `then` when the value is true;
* ``(PICK, key, default, shift, mask, texts)``: ``texts[(value >> shift) & mask]``
  (no shift at all when it is 0), a table of ready texts (every TOS byte's);
* ``(CALL, function)``: ``function(record)``, a str, for the odd piece that is
  no table (a MAC address, ICMP's gateway); the compiled walker calls it too.

Two interpreters take the same table: `python_line` generates a Python
function from it (the pure path), and `compiled_line` hands it to
``ulogpy._fastpath.TextLine``, which walks it in C.  Both give the same text
for every record, or raise the same error (tests/unit/test_textline.py).
`text_line` picks the compiled one where it is built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ulogpy import fastpath
from ulogpy.core.codegen import define
from ulogpy.render.jsontext import fstring_literal

TEXT, FIELD, SWITCH, PRESENT, WHEN, PICK, CALL = range(7)

Step = tuple[Any, ...]
Layout = tuple[Step, ...]
Line = Callable[[dict], str]
Steps = Layout | list[Step]


def text(literal: str) -> Step:
    return (TEXT, literal)


def field(key: str, prefix: str, suffix: str = " ", spec: str = "",
          default: object = None) -> Step:
    return (FIELD, key, prefix, suffix, spec, default)


def switch(key: str, cases: Mapping[Any, Steps], other: Steps = (),
           default: object = None) -> Step:
    return (SWITCH, key, {value: tuple(steps) for value, steps in cases.items()}, tuple(other),
            default)


def present(keys: Iterable[str], then: Steps, otherwise: Steps = ()) -> Step:
    return (PRESENT, tuple(keys), tuple(then), tuple(otherwise))


def when(key: str, then: Steps) -> Step:
    return (WHEN, key, tuple(then))


def pick(key: str, texts: Iterable[str], default: int = 0, shift: int = 0,
         mask: int | None = None) -> Step:
    texts = tuple(texts)
    return (PICK, key, default, shift, len(texts) - 1 if mask is None else mask, texts)


def call(function: Callable[[dict], str]) -> Step:
    return (CALL, function)


#: How deep branches may nest (the compiled walker's limit too).
DEPTH_MAX = 32
_SHAPES: dict[int, tuple[type, ...]] = {
    TEXT: (str,), FIELD: (str, str, str, str, object), SWITCH: (str, dict, tuple, object),
    PRESENT: (tuple, tuple, tuple), WHEN: (str, tuple), PICK: (str, object, int, int, tuple),
    CALL: (object,),
}


def _branches(step: Step) -> tuple[Steps, ...]:
    kind = step[0]
    if kind == SWITCH:
        return (step[3], *step[2].values())
    if kind == PRESENT:
        return (step[2], step[3])
    if kind == WHEN:
        return (step[2],)
    return ()


def _well_formed(step: object) -> bool:
    kinds = (_SHAPES.get(step[0]) if isinstance(step, tuple) and step
             and isinstance(step[0], int) else None)
    if kinds is None or len(step) != 1 + len(kinds) or not all(
            isinstance(part, kind) for part, kind in zip(step[1:], kinds, strict=True)):
        return False
    kind = step[0]
    literals = step[1:2] if kind == TEXT else step[2:5] if kind == FIELD else \
        step[5] if kind == PICK else ()
    try:  # (literals are written as UTF-8; keys are only looked up)
        if not all(isinstance(part, str) and part.encode() is not None for part in literals):
            return False
    except UnicodeError:
        return False
    if kind == PRESENT:
        return bool(step[1]) and all(isinstance(key, str) for key in step[1])
    if kind == PICK:
        return 0 <= step[3] < 2**63 and 0 <= step[4] < len(step[5])  # (C longs)
    if kind == CALL:
        return callable(step[1])
    return True


def check(layout: Layout, depth: int = 0) -> None:
    """Refuse what is not a layout (ValueError), as the compiled walker refuses it."""
    if not isinstance(layout, tuple) or depth > DEPTH_MAX:
        raise ValueError("text layout: branches nested too deep" if depth > DEPTH_MAX
                         else "text layout: a tuple of steps")
    for step in layout:
        if not _well_formed(step):
            raise ValueError(f"text layout: not a step: {step!r}")
        for steps in _branches(step):
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

    def value(key: str, default: object) -> str:
        return f"get({key!r})" if default is None else f"get({key!r}, {constant(default)})"

    def shown(expression: str, spec: str) -> str:
        return f"{{{expression}:{{{constant(spec)}}}}}" if spec else f"{{{expression}}}"

    def emit(steps: Layout, indent: str) -> None:
        start = len(lines)
        run: list[str] = []  # f-string parts of the steps always written, run together

        def flush() -> None:
            if run:
                lines.append(f"{indent}put(f'{''.join(run)}')")
                run.clear()

        for step in steps:
            kind = step[0]
            if kind == TEXT:
                run.append(fstring_literal(step[1]))
                continue
            if kind == FIELD and step[5] is not None:
                _, key, prefix, suffix, spec, default = step
                # (the key as a name: no quotes inside the f-string's quotes)
                run.append(fstring_literal(prefix)
                           + shown(f"get({constant(key)}, {constant(default)})", spec)
                           + fstring_literal(suffix))
                continue
            flush()
            if kind == FIELD:
                _, key, prefix, suffix, spec, _default = step
                lines.append(f"{indent}v = get({key!r})")
                lines.append(f"{indent}if v is not None:")
                lines.append(f"{indent}    put(f'{fstring_literal(prefix)}{shown('v', spec)}"
                             f"{fstring_literal(suffix)}')")
            elif kind == SWITCH:
                _, key, cases, other, default = step
                index = constant({case: i + 1 for i, case in enumerate(cases)})
                lines.append(f"{indent}b = {index}.get({value(key, default)}, 0)")
                for i, branch in enumerate([other, *cases.values()]):
                    lines.append(f"{indent}{'if' if i == 0 else 'elif'} b == {i}:")
                    emit(branch, indent + "    ")
            elif kind == PRESENT:
                _, keys, then, otherwise = step
                test = " and ".join(f"get({key!r}) is not None" for key in keys)
                lines.append(f"{indent}if {test}:")
                emit(then, indent + "    ")
                lines.append(f"{indent}else:")
                emit(otherwise, indent + "    ")
            elif kind == WHEN:
                lines.append(f"{indent}if get({step[1]!r}):")
                emit(step[2], indent + "    ")
            elif kind == PICK:
                _, key, default, shift, mask, texts = step
                shifted = f"({value(key, default)} >> {shift})" if shift else value(key, default)
                lines.append(f"{indent}put({constant(texts)}[{shifted} & {mask}])")
            else:
                lines.append(f"{indent}put({constant(step[1])}(record))")
        flush()
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
