"""The part of the event loop that socket inputs use: `add_reader` and
`remove_reader`.  The test calls the readers itself (`run_once`), so that it
decides when a socket is read."""

from __future__ import annotations

from collections.abc import Callable


class Readers:
    """Remembers the readers by file descriptor; `run_once` calls each once."""

    def __init__(self) -> None:
        self.readers: dict[int, Callable[[], object]] = {}

    def add_reader(self, sock, callback: Callable[[], object]) -> None:
        self.readers[sock.fileno()] = callback

    def remove_reader(self, sock) -> None:
        self.readers.pop(sock.fileno(), None)

    def run_once(self) -> None:
        for callback in list(self.readers.values()):
            callback()
