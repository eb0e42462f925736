"""JSON text exactly as ulogd's JSON output (jansson, default flags) writes it.

Separators `", "` and `": "`, keys in insertion order, UTF-8 unescaped,
`"` `\\` and control characters escaped (`\\n`, `\\t`, ... else `\\u00XX`
upper-case), `/` not escaped.  orjson cannot produce these separators, so
records are assembled from pre-rendered key prefixes; strings go through
one `str.translate` call.
"""

from __future__ import annotations

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
