"""Whether the compiled fast path runs here, and why not when it does not.

`ulogpy._fastpath` (C, built by `pip install` / scripts/setup from
ulogpy/_fastpath.c) walks netlink attributes and writes JSON and text lines from
the same tables the pure-Python code uses; each user asks `compiled` for it and keeps its
pure twin for when it is None.  Both give the same records, bytes and errors
(tests/unit/test_fastpath.py).  ``ULOGPY_PURE=1`` in the environment forces the
pure path, so the test suite can run the differential tests both ways.
"""

from __future__ import annotations

import os
from types import ModuleType

compiled: ModuleType | None
#: Why the pure path runs (None: the compiled one does).
reason: str | None
if os.environ.get("ULOGPY_PURE", "") not in ("", "0"):
    compiled, reason = None, "ULOGPY_PURE is set in the environment"
else:
    try:
        from ulogpy import _fastpath as compiled
        reason = None
    except ImportError as exc:  # not built: no compiler or headers at install time
        compiled, reason = None, f"ulogpy._fastpath is not built ({exc})"


def status() -> str:
    """One line for the start-up log: which path runs, and why."""
    if compiled is not None:
        return "compiled fast path on (ulogpy._fastpath)"
    return f"pure-Python path: {reason}"
