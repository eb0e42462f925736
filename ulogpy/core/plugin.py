"""Plugin base classes.

A plugin class declares, as class-level tables, what ulogd's plugin
descriptor declares: its name, kind, option template, input keys and output
keys.  The stack builder validates and binds everything at load time; the
per-event methods (`interp`, `write`) then run with no checks at all.

Plugins stay small: queues, counters, flushing and signal fan-out belong to
the runner (`ulogpy.runner`), not to the plugins.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ulogpy.core.keys import Key


class Kind(enum.Enum):
    INPUT = "input"
    FILTER = "filter"
    OUTPUT = "output"


class DataType(enum.IntFlag):
    """ulogd's data-type classes, used only to warn about odd neighbours."""

    SOURCE = 1
    RAW = 2
    PACKET = 4
    FLOW = 8
    SUM = 16
    SINK = 32


@dataclass(frozen=True, slots=True)
class Option:
    """One configuration option of a plugin.

    `type` is `int` or `str`, as in ulogd.  `choices` (if given) restricts a
    string option; `check` may reject a value with a message naming what is
    valid.  `ulogd=False` marks ulogpy's own extensions, which `-i` marks.
    """

    name: str
    type: type
    default: Any
    mandatory: bool = False
    help: str = ""
    choices: tuple[str, ...] | None = None
    check: Callable[[Any], str | None] | None = None
    ulogd: bool = True

    @property
    def info_line(self) -> str:
        """The `Var:` line of `-i` output, in ulogd's layout."""
        if self.type is int:
            text = f"Integer, Default: {_c_int(self.default)}"
        else:
            text = f"String, Default: {self.default}"
        if self.mandatory:
            text += ", Mandatory"
        line = f"\tVar: {self.name} ({text})"
        if not self.ulogd:
            line += "  [ulogpy]"
        return line


def _c_int(value: int) -> int:
    """Render as ulogd does: the value stored in a signed 32-bit C int."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


class Tally:
    """One counter bumped on the per-event path: `tally.n += 1` is a plain attribute
    store, where `Counters.add` is a method call and a dict update."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


class Counters:
    """Per-instance counters owned by the runner; plugins only increment.

    `add` for what is rare (errors, drops); `tally(name)` for what happens per
    event: its count joins the others whenever they are read.
    """

    __slots__ = ("values", "_tallies")

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self._tallies: dict[str, Tally] = {}

    def add(self, name: str, amount: int = 1) -> None:
        self.values[name] = self.values.get(name, 0) + amount

    def tally(self, name: str) -> Tally:
        """The per-event counter `name` (the same one for every caller)."""
        found = self._tallies.get(name)
        if found is None:
            found = self._tallies[name] = Tally()
        return found

    def get(self, name: str) -> int:
        tally = self._tallies.get(name)
        return self.values.get(name, 0) + (tally.n if tally is not None else 0)

    def snapshot(self) -> dict[str, int]:
        """Every counter that is not zero-and-never-added, by name."""
        merged = dict(self.values)
        for name, tally in self._tallies.items():
            if tally.n:
                merged[name] = merged.get(name, 0) + tally.n
        return merged

    def __str__(self) -> str:
        return " ".join(f"{k}={v}" for k, v in sorted(self.snapshot().items())) or "idle"


class Plugin:
    """Common part of every plugin instance."""

    name: ClassVar[str]
    kind: ClassVar[Kind]
    description: ClassVar[str] = ""
    input_type: ClassVar[DataType] = DataType(0)
    output_type: ClassVar[DataType] = DataType(0)
    options: ClassVar[tuple[Option, ...]] = ()
    input_keys: ClassVar[tuple[Key, ...]] = ()
    output_keys: ClassVar[tuple[Key, ...]] = ()
    #: ulogd refuses to build the stack when the instance has no [section].
    section_required: ClassVar[bool] = False
    #: Takes every key of the stack (JSON, GPRINT, ...) instead of `input_keys`.
    wildcard_input: ClassVar[bool] = False

    def __init__(self, instance_id: str, config: Any) -> None:
        self.id = instance_id
        self.config = config
        self.counters = Counters()
        #: For wildcard plugins: the upstream keys, in stack order, set by the builder.
        self.stack_keys: Sequence[Key] = ()

    def configure(self) -> None:
        """Called once the stack is bound; may raise `PluginError`."""

    def start(self, loop: Any) -> None:
        """Open sockets and files.  May raise `PluginError`."""

    def stop(self) -> None:
        """Release everything; called once at shutdown."""

    def signal(self, signum: int) -> None:
        """SIGHUP, SIGUSR1, SIGUSR2 are delivered here (in the loop, never in a handler)."""

    def __repr__(self) -> str:
        return f"{self.id}:{self.name}"


class InputPlugin(Plugin):
    """Produces records.  The runner sets `emit`; the plugin calls it per event."""

    kind = Kind.INPUT
    input_type = DataType.SOURCE

    def __init__(self, instance_id: str, config: Any) -> None:
        super().__init__(instance_id, config)
        self.emit: Callable[[dict], None] = _no_stack

    def on_readable(self) -> None:
        """Read what is ready, decode, `emit` each event (registered with the loop in start)."""


class FilterPlugin(Plugin):
    """Reads keys of a record and adds its own.  Return False to stop the event."""

    kind = Kind.FILTER

    def interp(self, record: dict) -> bool | None:
        raise NotImplementedError


class OutputPlugin(Plugin):
    """Writes records somewhere.  `flush` is called after each batch of events."""

    kind = Kind.OUTPUT
    output_type = DataType.SINK
    #: Written from a thread of its own behind a bounded queue (`ulogpy.outqueue`); such a
    #: plugin adds `QUEUE_OPTIONS` to its options.  An instance may turn it off in
    #: `configure` when it never blocks anyway (e.g. a non-blocking socket).
    queued: bool = False
    #: The output turns each record into a line of text (`render`) and writes lines
    #: (`write_lines`).  The runner then renders in the reader's thread, where the record
    #: is fresh in the cache, and queues the line: a fifth of a record's memory, and the
    #: writer thread only hands whole batches on.
    renders_text: bool = False

    def write(self, record: dict) -> None:
        raise NotImplementedError

    def render(self, record: dict) -> str:
        """The line `record` becomes (outputs with `renders_text`)."""
        raise NotImplementedError

    def write_lines(self, lines: list[str]) -> None:
        """Write lines `render` made, in order (outputs with `renders_text`)."""
        raise NotImplementedError

    def flush(self, force: bool = False) -> None:
        """Hand buffered records on (after each batch; `force` on the tick and at exit)."""


class PluginError(Exception):
    """A plugin refuses to configure or start; the message says why."""


def _no_stack(record: dict) -> None:  # pragma: no cover - replaced by the runner
    raise RuntimeError("input emitted before being attached to a stack")
