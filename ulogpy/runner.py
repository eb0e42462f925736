"""The runner: moves records from inputs through their stacks, owns counters.

Plugins stay small because everything around them lives here: fan-out of
one input to several stacks, the per-stack chain of filters and output,
counting what was emitted, stopped, failed or dropped, flushing outputs
after each batch, and delivering signals once per real instance.

The per-event path is a closure per stack with no validation: the stack
builder already checked everything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ulogpy.plugin import OutputPlugin, Plugin
from ulogpy.stack import Pipeline, Stack

log = logging.getLogger("ulogpy.runner")
#: How many failures of one instance are logged in full before only counting.
LOGGED_FAILURES = 5


def _stack_chain(stack: Stack) -> Callable[[dict], None]:
    """A function that runs one record through the filters and the output of `stack`."""
    filters = tuple(f.interp for f in stack.filters)
    write = stack.output.write
    out_counters = stack.output.counters
    label = stack.text

    def failed(where: Plugin, exc: Exception) -> None:
        where.counters.add("failed")
        if where.counters.get("failed") <= LOGGED_FAILURES:
            log.error("%s in stack '%s' failed on an event: %r", where, label, exc)

    plugins = tuple(stack.filters)

    def chain(record: dict) -> None:
        i = 0
        try:
            for i, interp in enumerate(filters):  # noqa: B007 - i names the failing filter
                if interp(record) is False:
                    plugins[i].counters.add("stopped")
                    return
        except Exception as exc:
            failed(plugins[i], exc)
            return
        try:
            write(record)
        except Exception as exc:
            failed(stack.output, exc)
        else:
            out_counters.add("written")

    return chain


def attach(pipeline: Pipeline) -> None:
    """Connect every input's `emit` to the chains of its stacks."""
    for inp in pipeline.inputs:
        chains = [_stack_chain(s) for s in pipeline.stacks_of(inp)]
        counters = inp.counters
        if len(chains) == 1:
            only = chains[0]

            def emit(record: dict, _only=only, _c=counters) -> None:
                _c.add("emitted")
                _only(record)
        else:
            def emit(record: dict, _chains=tuple(chains), _c=counters) -> None:
                _c.add("emitted")
                for chain in _chains:
                    chain(dict(record))
        inp.emit = emit


def flush_outputs(outputs: list[OutputPlugin], force: bool = False) -> None:
    for out in outputs:
        try:
            out.flush(force)
        except Exception as exc:
            out.counters.add("flush_failed")
            if out.counters.get("flush_failed") <= LOGGED_FAILURES:
                log.error("%s: flush failed: %s", out, exc)


def report_counters(pipeline: Pipeline, level: int = logging.INFO) -> None:
    """One log line per instance with its counters."""
    for inst in pipeline.instances():
        log.log(level, "counters %s: %s", inst, inst.counters)

