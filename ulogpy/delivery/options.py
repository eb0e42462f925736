"""The options every output takes for its buffer (ulogpy's own; `-i` marks them).

One set for every output, files, sockets and databases alike: how many items
wait in memory, what happens when that is full, and where and how much may
wait on disk.  The defaults differ by output (a database spools by default),
so each output asks for the set with its own defaults.
"""

from __future__ import annotations

from ulogpy.core.plugin import Option

POLICIES = ("block", "drop-oldest", "spool")
DEFAULT_SPOOL_DIR = "/var/lib/ulogpy/spool"
DEFAULT_SPOOL_MB = 1024


def _positive(value: int) -> str | None:
    return None if value > 0 else "must be greater than 0"


def queue_options(size: int = 100_000, policy: str = "drop-oldest") -> tuple[Option, ...]:
    """The buffer options, with an output's own defaults for size and policy."""
    return (
        Option("queue_size", int, size, check=_positive, ulogd=False,
               help="records kept in memory for this output"),
        Option("queue_policy", str, policy, choices=POLICIES, ulogd=False,
               help="when the memory queue is full: block the reader, drop the oldest, "
                    "or spool to disk (and write in order later, also after a restart)"),
        Option("spool_dir", str, DEFAULT_SPOOL_DIR, ulogd=False,
               help="directory of the on-disk spool (a subdirectory per instance)"),
        Option("spool_max_mb", int, DEFAULT_SPOOL_MB, check=_positive, ulogd=False,
               help="size limit of the spool in MiB; records beyond it are dropped, counted"),
    )
