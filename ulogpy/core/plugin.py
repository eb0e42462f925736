"""Plugin base classes.

A plugin class declares, as class-level tables, what ulogd's plugin
descriptor declares: its name, kind, option template, input keys and output
keys, and the counters it keeps (each one saying whether it counts a loss).
The stack builder validates and binds everything at load time; the per-event
methods (`interp`, `render`) then run with no checks at all.

Plugins stay small: the chain, counters and signal fan-out belong to the
runner (`ulogpy.daemon.runner`); every output's buffer, batching, retries and
reconnects to the delivery model (`ulogpy.delivery`).  An output provides a
`Transport` (open, write a batch, close) and, for text, `render`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from ulogpy.core.keys import Key
from ulogpy.core.loopapi import LoopAPI


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


@dataclass(frozen=True, slots=True)
class Counter:
    """One declared counter: its name, whether a rise means events or records were lost
    (the periodic report then logs it at NOTICE, and the metrics mark it), and what it
    counts."""

    name: str
    loss: bool = False
    help: str = ""


def counters(*specs: tuple | Counter) -> tuple[Counter, ...]:
    """A counter table from compact `(name, loss[, help])` rows (or Counters)."""
    return tuple(spec if isinstance(spec, Counter) else Counter(*spec) for spec in specs)


#: What the runner counts for every instance of a kind (plugins add their own).
RUNNER_COUNTERS = counters(
    ("emitted", False, "events the input handed to its stacks"),
    ("stopped", False, "events a filter stopped (not a loss: the filter's decision)"),
    ("failed", True, "events or records lost to an exception in the plugin"),
)
#: What the delivery model (`ulogpy.delivery`) counts for every output.
DELIVERY_COUNTERS = counters(
    ("written", False, "records that reached the destination (file, socket, database)"),
    ("rejected", True, "records the destination refused one by one (bad data), skipped"),
    ("dropped", True, "records lost to a full queue or spool, or left at exit"),
    ("spooled", False, "records put in the on-disk spool"),
    ("replayed", False, "spooled records written later"),
    ("blocked_ms", False, "milliseconds the reader waited for room (queue_policy=block)"),
    ("write_errors", True, "failed attempts to open, connect or write (each outage retried)"),
    ("reconnects", False, "times the destination was opened again after an outage"),
)


class Tally:
    """One counter bumped on the per-event path: `tally.n += 1` is a plain attribute
    store, where `Counters.add` is a method call and a dict update."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


class Counters:
    """Per-instance counters owned by the runner; plugins only increment.

    `add` for what is rare (errors, drops); `tally(name)` for what happens per
    event: its count joins the others whenever they are read.  `declared` is the
    instance's counter table, by name (what is a loss comes from there).
    """

    __slots__ = ("values", "_tallies", "declared")

    def __init__(self, declared: tuple[Counter, ...] = ()) -> None:
        self.values: dict[str, int] = {}
        self._tallies: dict[str, Tally] = {}
        self.declared: dict[str, Counter] = {c.name: c for c in declared}

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

    def is_loss(self, name: str) -> bool:
        spec = self.declared.get(name)
        return spec is not None and spec.loss

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
    #: The plugin's own counters (the runner's and the delivery's come on top).
    counter_table: ClassVar[tuple[Counter, ...]] = ()

    def __init__(self, instance_id: str, config: Any) -> None:
        self.id = instance_id
        self.config = config
        self.counters = Counters(self.declared_counters())
        #: For wildcard plugins: the upstream keys, in stack order, set by the builder.
        self.stack_keys: Sequence[Key] = ()
        #: What the stack's input gives (flows, packets, sums), set by the builder: an
        #: output may depend on it (XML names its file after it).
        self.source_type: DataType = DataType(0)

    #: What the runner (and, for outputs, the delivery) counts for every plugin of the kind.
    kind_counters: ClassVar[tuple[Counter, ...]] = RUNNER_COUNTERS

    @classmethod
    def declared_counters(cls) -> tuple[Counter, ...]:
        """Every counter an instance may have: its kind's, then each `counter_table` of
        its classes, base classes first (a shared base such as the netlink read side
        declares what it counts once)."""
        found: dict[str, Counter] = {c.name: c for c in cls.kind_counters}
        for klass in reversed(cls.__mro__):
            for spec in vars(klass).get("counter_table", ()):
                found[spec.name] = spec
        return tuple(found.values())

    @classmethod
    def refusal(cls, instance_id: str, stack: list[tuple[str, str]], whole: Any) -> str | None:
        """Why no stack may use this plugin (None: it may).  A plugin ulogpy only
        describes (ULOG) says here what replaces it; `stack` is the stack line's
        (id, plugin) pairs, `whole` the configuration."""
        return None

    def configure(self) -> None:
        """Called once the stack is bound; may raise `PluginError`."""

    def start(self, loop: LoopAPI) -> None:
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

    def catch_up(self) -> None:
        """Decode and `emit` what was read but not decoded yet; the daemon calls it before
        it stops.  Only an input that reads ahead (the netlink inputs) has anything."""


class FilterPlugin(Plugin):
    """Reads keys of a record and adds its own.  Return False to stop the event."""

    kind = Kind.FILTER

    def interp(self, record: dict) -> bool | None:
        raise NotImplementedError


class OutputPlugin(Plugin):
    """Writes records somewhere, through the delivery model (`ulogpy.delivery`).

    An output provides only its `transport` (open, write a batch, close: a file, a
    socket, a database) and, for text outputs, `render`.  The runner gives every
    output a buffer (`queue_size`, `queue_policy`, `spool_dir`, `spool_max_mb`) and a
    writer that owns batching, retries with backoff, reconnects, SIGHUP's reopen and
    the counters; a non-blocking transport is written from the event loop, any other
    from a thread of the output's own, so a stalled destination never stops a reader.
    """

    kind = Kind.OUTPUT
    output_type = DataType.SINK
    #: The output turns each record into a line of text (`render`): the runner renders
    #: in the reader's thread, where the record is fresh in the cache, and queues the
    #: line (a fifth of a record's memory); the transport gets lists of lines.
    renders_text: ClassVar[bool] = False
    #: The NOTICE logged on SIGHUP's reopen (ulogd's words for the plugin), if not the
    #: generic one naming the instance.
    reopen_notice: str | None = None
    #: Set by the plugin (in `configure`): where the records go.
    transport: Transport

    kind_counters = RUNNER_COUNTERS + DELIVERY_COUNTERS

    def render(self, record: dict) -> str:
        """The line `record` becomes (outputs with `renders_text`)."""
        raise NotImplementedError

    def batching(self) -> tuple[int, float]:
        """(most items per write, longest wait for more before writing): by default a
        quiet daemon writes each batch as it comes, and a busy one 500 at a time."""
        return 500, 0.0

    def backoff(self) -> tuple[float, float]:
        """(first, longest) wait in seconds before opening again after a failure."""
        return 0.5, 30.0

    def stop_timeout(self) -> float:
        """Seconds the destination gets at exit to take what waits (the rest is spooled
        or counted as dropped)."""
        return 5.0

    def check_delivery(self) -> str | None:
        """Why the configured delivery cannot work for this output, or None (the stack
        builder asks once `configure` has set the transport)."""
        transport = getattr(self, "transport", None)
        if transport is None:
            return "sets no transport in configure()"
        if transport.nonblocking and self.config.queue_policy == "block":
            return ("option 'queue_policy': block would stop the event loop, which writes "
                    f"to {transport.target}; use drop-oldest or spool")
        return None


class Unavailable(Exception):
    """The destination cannot take items now (gone, full, refusing): the writer keeps
    them, closes the transport and opens it again after a backoff.  `written` items
    of the batch went in first."""

    def __init__(self, message: str, written: int = 0) -> None:
        super().__init__(message)
        self.written = written


class WouldBlock(Exception):
    """A non-blocking transport can take no more now: `written` items went in and the
    `rejected` ones after them were refused; the writer calls again once `fileno` is
    writable (giving up after `retry_after` seconds), or after `retry_after` seconds.
    `started` says the next item went in partly: it must be the next one written, so
    the buffer may not drop it to make room (a stream would get half a record)."""

    def __init__(self, written: int = 0, fileno: int | None = None,
                 retry_after: float | None = None, rejected: int = 0,
                 started: bool = False) -> None:
        super().__init__("would block")
        self.written = written
        self.fileno = fileno
        self.retry_after = retry_after
        self.rejected = rejected
        self.started = started


class Transport(Protocol):
    """Where an output's items go; called only by the output's writer.

    `write` stores the items in order and returns how many reached the destination:
    the others were refused one by one (counted `rejected`).  It raises `Unavailable`
    for an outage and, when `nonblocking`, `WouldBlock` when the peer must drain first.
    """

    #: Written from the event loop (never blocks), else from a thread of its own.
    nonblocking: bool
    #: Where it writes, for log lines ("/var/log/ulogd.json", "tcp:host:port", ...).
    target: str

    def open(self) -> None: ...

    def write(self, items: list) -> int: ...

    def close(self) -> None: ...


class PluginError(Exception):
    """A plugin refuses to configure or start; the message says why."""


def _no_stack(record: dict) -> None:  # pragma: no cover - replaced by the runner
    raise RuntimeError("input emitted before being attached to a stack")
