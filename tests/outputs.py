"""Output plugins run by the test itself, with the real delivery model.

`Delivered` gives one output instance its real buffer and writer
(`ulogpy.delivery.attach`), as the runner does, without a daemon; `write`
queues a record as a stack would (rendered first for text outputs), `flush`
hands the batch over as the runner does after each read batch.
`ListTransport` is a destination for test plugins: it keeps what it gets.
"""

from __future__ import annotations

import signal

from ulogpy import delivery
from ulogpy.core.plugin import OutputPlugin


class ListTransport:
    """Keeps every item it is given, in `items` (written from the loop, never blocks)."""

    nonblocking = True
    target = "a list"

    def __init__(self, items: list | None = None) -> None:
        self.items = [] if items is None else items

    def open(self) -> None:
        pass

    def write(self, items: list) -> int:
        self.items.extend(items)
        return len(items)

    def close(self) -> None:
        pass


class Delivered:
    """An output with its buffer and writer; attributes not its own are the output's."""

    def __init__(self, inst: OutputPlugin, loop=None) -> None:
        self.inst = inst
        self.writer = delivery.attach(inst, loop)
        self.counters = inst.counters

    def start(self) -> None:
        self.inst.start(None)
        self.writer.open_at_start()
        self.writer.start()

    def write(self, record: dict) -> None:
        self.writer.buffer.put(self.inst.render(record) if self.inst.renders_text else record)

    def flush(self) -> None:
        self.writer.buffer.hand_over()

    def signal(self, signum: int) -> None:
        if signum == signal.SIGHUP:
            self.writer.reopen()
        else:
            self.writer.control(lambda: self.inst.signal(signum))

    def stop(self) -> None:
        self.writer.stop()
        self.inst.stop()

    def __getattr__(self, name: str):
        return getattr(self.inst, name)
