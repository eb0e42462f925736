"""The one place that turns generated source into functions.

Several hot paths are generated once and then run per event: each stack's
chain (the runner), the JSON render of one key set, the conntrack and NFLOG
message shapes, attribute layouts and packet headers.  They all come through
`define`, which names each piece of source uniquely and registers it with
`linecache`, so a traceback, `inspect.getsource` or a profiler shows the
generated line instead of nothing.
"""

from __future__ import annotations

import itertools
import linecache
from collections.abc import Callable
from typing import Any

_serial = itertools.count(1)


def define(source: str | list[str], name: str, label: str,
           scope: dict[str, Any] | None = None) -> Callable[..., Any]:
    """Compile `source` (text or lines) and return the function `name` it defines.

    `label` says what was generated ("stack ct1:NFCT,...", "JSON render"); `scope`
    holds the names the source uses (it becomes the function's globals).
    """
    text = source if isinstance(source, str) else "\n".join(source)
    if not text.endswith("\n"):
        text += "\n"
    filename = f"<ulogpy {label} #{next(_serial)}>"
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    namespace: dict[str, Any] = dict(scope) if scope else {}
    exec(compile(text, filename, "exec"), namespace)  # noqa: S102 - our own generated source
    return namespace[name]
