"""What a plugin may ask of the event loop, as a type.

Why a Protocol: plugins get the loop in `start` and use only these six calls;
naming them here keeps plugins independent of `ulogpy.daemon.loop.Loop` (tests
and tools pass their own loop) while a type checker still catches a misspelt
or misused call.  `Loop` satisfies it structurally; see the unit test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable


class FileLike(Protocol):
    """Anything the selector can watch: a socket, or an object with a file descriptor."""

    def fileno(self) -> int: ...


@runtime_checkable
class LoopAPI(Protocol):
    """The loop calls of plugins: socket readiness callbacks and timers.

    Callbacks run in the loop's thread between events, never re-entrantly.
    """

    def add_reader(self, sock: FileLike | int, callback: Callable[[], None]) -> None:
        """Call `callback` whenever `sock` has data (replaces an earlier reader)."""

    def remove_reader(self, sock: FileLike | int) -> None:
        """Stop watching `sock` for reading."""

    def add_writer(self, sock: FileLike | int, callback: Callable[[], None]) -> None:
        """Call `callback` whenever `sock` can take more data (or its connect finished)."""

    def remove_writer(self, sock: FileLike | int) -> None:
        """Stop watching `sock` for writing."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        """Call `callback` once, `delay` seconds from now."""

    def call_every(self, interval: float, callback: Callable[[], None]) -> None:
        """Call `callback` every `interval` seconds, the first time one interval from now."""
