"""The runner: moves records from inputs through their stacks, owns counters.

Plugins stay small because everything around them lives here: fan-out of
one input to several stacks, the chain of filters and outputs,
counting what was emitted, stopped or failed, the guard around every
input's handler (`ulogpy.daemon.guard`), each output's buffer and writer
(`ulogpy.delivery`), the hand-over after each read batch, and delivering
signals once per real instance.

The per-event path is generated code with no validation (the stack builder
already checked everything): one function per branch of each input's prefix
tree (`ulogpy.daemon.prefix`), so a filter that several stacks share from
their start runs once per event.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import Any

from ulogpy import delivery
from ulogpy.core.codegen import define
from ulogpy.core.plugin import Counters, OutputPlugin, Plugin, Tally
from ulogpy.core.stack import Pipeline, Stack
from ulogpy.daemon.guard import guard_input
from ulogpy.daemon.ownlog import NOTICE
from ulogpy.daemon.prefix import Branch, build_tree
from ulogpy.delivery.writer import Writer

log = logging.getLogger("ulogpy.runner")
#: How many failures of one instance are logged in full before only counting.
LOGGED_FAILURES = 5


def _branch_chain(branch: Branch, emitted: Tally | None = None) -> Callable[[dict], None]:
    """A function that runs one record through a branch's filters, then its items.

    Generated, one straight line per filter: this runs for every event, and a
    loop over the filters (with `enumerate` to know which one failed) costs more
    than the filters of a short stack themselves.  An item is a stack's output
    (`End`: the record goes to the output's buffer, or the line the output
    renders it into, rendered right here in the reader's thread) or a branch
    below (its own generated function).  Filters add keys, and each stack must
    see only its own: every item but the last gets a copy of the record, the last
    the record itself (an input never looks at a record again once emitted).
    With `emitted` the function is the input's `emit` itself and counts the event.
    """
    plugins = tuple(branch.filters)
    label = " + ".join(s.text for s in branch.stacks)

    def failed(where: Plugin, exc: Exception) -> None:
        where.counters.add("failed")
        if where.counters.get("failed") <= LOGGED_FAILURES:
            log.error("%s in stack '%s' failed on an event: %r", where, label, exc)

    def stopped(index: int) -> None:
        plugins[index].counters.add("stopped")

    scope: dict[str, object] = {"failed": failed, "stopped": stopped, "plugins": plugins,
                                "emitted": emitted}
    lines = ["def chain(record):"]
    if emitted is not None:
        lines.append("    emitted.n += 1")
    if plugins:
        lines.append("    at = 0")
        lines.append("    try:")
        for i, plugin in enumerate(plugins):
            scope[f"f{i}"] = plugin.interp
            if i:
                lines.append(f"        at = {i}")
            lines.append(f"        if f{i}(record) is False:")
            lines.append(f"            return stopped({i})")
        lines.append("    except Exception as exc:")
        lines.append("        return failed(plugins[at], exc)")
    last = len(branch.items) - 1
    for i, item in enumerate(branch.items):
        arg = "record" if i == last else "record.copy()"
        if isinstance(item, Branch):
            scope[f"b{i}"] = _branch_chain(item)
            lines.append(f"    b{i}({arg})")
            continue
        output = item.stack.output
        scope[f"sink{i}"], scope[f"out{i}"] = item.sink, output
        if not output.renders_text:
            lines.append(f"    sink{i}({arg})")
            continue
        scope[f"render{i}"] = output.render
        lines += ["    try:", f"        line = render{i}({arg})", "    except Exception as exc:",
                  f"        failed(out{i}, exc)", "    else:", f"        sink{i}(line)"]
    return define(lines, "chain", f"stack {label}", scope)


class Runner:
    """Connects inputs to their stacks; owns every output's buffer and writer."""

    def __init__(self, pipeline: Pipeline, loop: Any) -> None:
        self.pipeline = pipeline
        self.writers: dict[OutputPlugin, Writer] = {
            out: delivery.attach(out, loop) for out in pipeline.outputs}
        self._hand_overs = tuple(w.buffer.hand_over for w in self.writers.values())
        for inp in pipeline.inputs:
            guard_input(inp)
            stacks = [(s, self.writers[s.output].buffer.put) for s in pipeline.stacks_of(inp)]
            inp.emit = _emitter(stacks, inp.counters)

    def open(self, inst: Plugin) -> None:
        """An output whose destination must open at start (a file, as in ulogd) opens
        now, or start-up fails with the plugin's words (PluginError)."""
        writer = self.writers.get(inst)  # type: ignore[call-overload]
        if writer is not None:
            writer.open_at_start()

    def start(self, interrupted: Callable[[], bool] = lambda: False) -> None:
        """Start the writers (after the outputs' own `start`, before the inputs')."""
        for writer in self.writers.values():
            writer.buffer.interrupted = interrupted
            writer.start()

    def after_batch(self) -> None:
        """After each read batch: what the stacks queued goes to the writers."""
        for hand_over in self._hand_overs:
            hand_over()

    def deliver(self, inst: Plugin, signum: int) -> None:
        """A signal for one instance; an output's runs in its writer, after its records
        (SIGHUP reopens every output's destination)."""
        writer = self.writers.get(inst)  # type: ignore[call-overload]
        if writer is None:
            inst.signal(signum)
        elif signum == signal.SIGHUP:
            writer.reopen()
        elif type(inst).signal is not Plugin.signal:  # a control writes what precedes it
            writer.control(lambda: inst.signal(signum))

    def depth(self) -> int:
        """Records waiting in every output's buffer (memory and spool)."""
        return sum(w.buffer.depth() for w in self.writers.values())

    def shutdown(self) -> list[OutputPlugin]:
        """Write everything still queued; returns the outputs that stalled (left running)."""
        for writer in self.writers.values():
            writer.request_stop()  # every thread drains at once, within one stop timeout
        return [out for out, writer in self.writers.items() if not writer.stop()]


def _emitter(stacks: list[tuple[Stack, Callable[[Any], None]]],
             counters: Counters) -> Callable[[dict], None]:
    """The input's `emit`: the root of its stacks' prefix tree (`daemon/prefix.py`)."""
    return _branch_chain(build_tree(stacks), emitted=counters.tally("emitted"))


def attach(pipeline: Pipeline, loop: Any = None) -> Runner:
    """Connect every input's `emit` to the chains of its stacks."""
    return Runner(pipeline, loop)


def report_counters(pipeline: Pipeline, level: int = logging.INFO) -> None:
    """One log line per instance with its counters."""
    for inst in pipeline.instances():
        log.log(level, "counters %s: %s", inst, inst.counters)


class PeriodicReport:
    """The counters every `stats_interval` seconds: at INFO, except the instances that
    lost something since the last report, which come at NOTICE with what grew (so a
    daemon logging only notices still says, every interval, that it is losing events)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.instances = pipeline.instances()
        self.last: dict[Plugin, dict[str, int]] = {}

    def __call__(self) -> None:
        for inst in self.instances:
            now = inst.counters.snapshot()
            before = self.last.get(inst, {})
            self.last[inst] = now
            grew = {k: v - before.get(k, 0) for k, v in now.items()
                    if inst.counters.is_loss(k) and v > before.get(k, 0)}
            if grew:
                since = ", ".join(f"{k} +{n}" for k, n in sorted(grew.items()))
                log.log(NOTICE, "counters %s: %s (since the last report: %s)", inst,
                        inst.counters, since)
            else:
                log.info("counters %s: %s", inst, inst.counters)
