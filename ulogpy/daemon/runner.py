"""The runner: moves records from inputs through their stacks, owns counters.

Plugins stay small because everything around them lives here: fan-out of
one input to several stacks, the per-stack chain of filters and output,
counting what was emitted, stopped, failed or dropped, the queue and
writer thread of each output (`ulogpy.outqueue`), flushing after each
batch, and delivering signals once per real instance.

The per-event path is a closure per stack with no validation: the stack
builder already checked everything.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable

from ulogpy.core.plugin import Counters, OutputPlugin, Plugin, Tally
from ulogpy.core.stack import Pipeline, Stack
from ulogpy.daemon.ownlog import NOTICE
from ulogpy.delivery.outqueue import OutputQueue

log = logging.getLogger("ulogpy.runner")
#: How many failures of one instance are logged in full before only counting.
LOGGED_FAILURES = 5


def _stack_chain(stack: Stack, sink: Callable[[dict], None] | None,
                 emitted: Tally | None = None) -> Callable[[dict], None]:
    """A function that runs one record through the filters of `stack` to its output.

    `sink` is the output's queue (`OutputQueue.put`), which gets the record, or the
    line the output renders it into (`renders_text`, rendered right here); without
    a queue the output's `write` is called right here and counted.  With `emitted`
    the function is the input's `emit` itself and counts the event there.

    Generated, one straight line per filter: this runs for every event, and a
    loop over the filters (with `enumerate` to know which one failed) costs more
    than the filters of a short stack themselves.
    """
    plugins = tuple(stack.filters)
    output = stack.output
    label = stack.text

    def failed(where: Plugin, exc: Exception) -> None:
        where.counters.add("failed")
        if where.counters.get("failed") <= LOGGED_FAILURES:
            log.error("%s in stack '%s' failed on an event: %r", where, label, exc)

    def stopped(index: int) -> None:
        plugins[index].counters.add("stopped")

    scope: dict[str, object] = {"failed": failed, "stopped": stopped, "plugins": plugins,
                                "emitted": emitted, "sink": sink, "write": output.write,
                                "render": output.render, "output": output,
                                "written": output.counters.tally("written")}
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
    if sink is not None and output.renders_text:
        lines += ["    try:", "        line = render(record)", "    except Exception as exc:",
                  "        return failed(output, exc)", "    sink(line)"]
    elif sink is not None:
        lines.append("    sink(record)")
    else:
        lines += ["    try:", "        write(record)", "    except Exception as exc:",
                  "        failed(output, exc)", "    else:", "        written.n += 1"]
    exec(compile("\n".join(lines) + "\n", f"<stack {label}>", "exec"), scope)
    return scope["chain"]  # type: ignore[return-value]


class Runner:
    """Connects inputs to their stacks and owns the output queues and their threads."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.queues: dict[OutputPlugin, OutputQueue] = {}
        for out in pipeline.outputs:
            if out.queued:
                cfg = out.config
                self.queues[out] = OutputQueue(out, cfg.queue_size, cfg.queue_policy,
                                               cfg.spool_dir)
        self.inline = [out for out in pipeline.outputs if out not in self.queues]
        self._hand_overs = tuple(q.hand_over for q in self.queues.values())
        for inp in pipeline.inputs:
            stacks = [(s, self._sink(s.output)) for s in pipeline.stacks_of(inp)]
            inp.emit = _emitter(stacks, inp.counters)

    def _sink(self, out: OutputPlugin) -> Callable[[dict], None] | None:
        queue = self.queues.get(out)
        return queue.put if queue is not None else None

    def start(self, interrupted: Callable[[], bool] = lambda: False) -> None:
        """Start the output threads (after the outputs' own `start`)."""
        for queue in self.queues.values():
            queue.interrupted = interrupted
            queue.start()

    def after_batch(self) -> None:
        """After each read batch: queued records go to their threads, inline outputs flush."""
        for hand_over in self._hand_overs:
            hand_over()
        flush_outputs(self.inline)

    def tick(self) -> None:
        """Once a second: every output writes what it holds back (non-`sync` files)."""
        for out, queue in self.queues.items():
            queue.control(functools.partial(out.flush, True))
        flush_outputs(self.inline, force=True)

    def deliver(self, inst: Plugin, signum: int) -> None:
        """A signal for one instance; an output's runs in its thread, after its records."""
        queue = self.queues.get(inst)  # type: ignore[call-overload]
        if queue is not None:
            queue.control(functools.partial(inst.signal, signum))
        else:
            inst.signal(signum)

    def shutdown(self, timeout: float = 5.0) -> list[OutputPlugin]:
        """Write everything still queued; returns the outputs that stalled (left running)."""
        for queue in self.queues.values():
            queue.request_stop()
        deadline = time.monotonic() + timeout
        stalled = [out for out, queue in self.queues.items()
                   if not queue.join(max(0.0, deadline - time.monotonic()))]
        flush_outputs(self.inline, force=True)
        return stalled


def _emitter(stacks: list[tuple[Stack, Callable[[dict], None] | None]],
             counters: Counters) -> Callable[[dict], None]:
    """The input's `emit`: the only stack's chain itself, or the chain of each stack.

    Filters add keys, and each stack must see only its own: every stack but the
    last gets a copy of the record, the last the record itself (as a single stack
    does; an input never looks at a record again once emitted).
    """
    emitted = counters.tally("emitted")
    if len(stacks) == 1:
        return _stack_chain(*stacks[0], emitted=emitted)
    *firsts, last = (_stack_chain(stack, sink) for stack, sink in stacks)
    first_chains = tuple(firsts)

    def emit(record: dict) -> None:
        emitted.n += 1
        for chain in first_chains:
            chain(record.copy())
        last(record)

    return emit


def attach(pipeline: Pipeline) -> Runner:
    """Connect every input's `emit` to the chains of its stacks."""
    return Runner(pipeline)


def flush_outputs(outputs: list[OutputPlugin], force: bool = False) -> None:
    for out in outputs:
        try:
            out.flush(force)
        except Exception as exc:
            out.counters.add("flush_failed")
            if out.counters.get("flush_failed") <= LOGGED_FAILURES:
                log.error("%s: flush failed: %s", out, exc)


#: Counters of events or records that did not make it (to the kernel's socket, into an
#: output, into a database): a periodic report that sees one grow says so at NOTICE.
LOSS_COUNTERS = frozenset({
    "lost", "overruns", "dropped", "failed", "rejected", "truncated", "hash_full",
    "write_errors", "recv_errors", "flush_failed",
})


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
                    if k in LOSS_COUNTERS and v > before.get(k, 0)}
            if grew:
                since = ", ".join(f"{k} +{n}" for k, n in sorted(grew.items()))
                log.log(NOTICE, "counters %s: %s (since the last report: %s)", inst,
                        inst.counters, since)
            else:
                log.info("counters %s: %s", inst, inst.counters)
