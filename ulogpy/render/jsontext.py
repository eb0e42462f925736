"""JSON text exactly as ulogd's JSON output (jansson, default flags) writes it.

Separators `", "` and `": "`, keys in insertion order, UTF-8 unescaped,
`"` `\\` and control characters escaped (`\\n`, `\\t`, ... else `\\u00XX`
upper-case), `/` not escaped.  orjson cannot produce these separators, so
records are assembled from pre-rendered key prefixes; strings go through
one `str.translate` call, or none at all when `needs_escape` says they
have nothing to escape (the common case, checked once for all of them).
"""

from __future__ import annotations

import re

_ESCAPES = {i: f"\\u{i:04X}" for i in range(0x20)}
_ESCAPES.update({
    ord('"'): '\\"', ord("\\"): "\\\\", ord("\b"): "\\b", ord("\f"): "\\f",
    ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t",
})


def json_string(text: str) -> str:
    return '"' + text.translate(_ESCAPES) + '"'


def key_prefix(name: str) -> str:
    """`"name": ` ready to be followed by a value."""
    return json_string(name) + ": "


#: `needs_escape(text)` is not None when `json_string` would change something in `text`.
needs_escape = re.compile(r'[\x00-\x1f"\\]').search


def fstring_literal(text: str) -> str:
    """`text` as the literal part of a generated f-string: braces doubled, anything
    but printable ASCII (and the quote and backslash) as an escape sequence."""
    out = []
    for ch in text:
        if ch in "{}":
            out.append(ch * 2)
        elif " " <= ch <= "~" and ch not in "'\\":
            out.append(ch)
        else:
            out.append(f"\\U{ord(ch):08x}")
    return "".join(out)
