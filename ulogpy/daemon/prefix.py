"""Shared stack prefixes: the stacks of one input as a tree of filter runs.

ulogd runs every filter once per stack: with the shipped configuration's three
NFCT stacks, IP2STR converts the same addresses three times per event.  Here,
stacks that start with the same input and the same filter instances, in the
same order, run that prefix once per event and branch at the first
difference.  "The same instance" means the same id, plugin and options (one
`[section]`, as in ulogd) with the same upstream keys: given the same record
it computes the same keys, so running it once changes no output byte.  A
filter that stops an event stops it for the stacks below it only, which are
exactly the stacks whose own copy would have stopped it.

Counters: every configured instance stays an instance (SIGUSR1, the periodic
report and the metrics list each one, and sum instances of one id as
before).  The instances a shared run stands for share its `Counters` object,
so each reports what it would have counted had it run by itself: an event
stopped by a shared IP2STR shows `stopped=1` on each of the stacks' IP2STR
instances, as it would unshared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ulogpy.core.plugin import FilterPlugin
from ulogpy.core.stack import Stack

Sink = Callable[[Any], None]


@dataclass
class Branch:
    """Filters run once for every stack below, then each item in stack order.

    An item is another `Branch` or an `End` (a stack's output right after
    these filters).
    """

    filters: list[FilterPlugin] = field(default_factory=list)
    items: list[Branch | End] = field(default_factory=list)

    @property
    def stacks(self) -> list[Stack]:
        """Every stack that goes through this branch, in configuration order."""
        out: list[Stack] = []
        for item in self.items:
            out.extend([item.stack] if isinstance(item, End) else item.stacks)
        return out


@dataclass
class End:
    """A stack's output and the sink its records or lines go into."""

    stack: Stack
    sink: Sink


def same_filter(a: FilterPlugin, b: FilterPlugin) -> bool:
    """Would `b` compute what `a` computes, given the same record?

    Same id (one config section), same plugin, same option values, same keys
    bound from upstream.  A plugin that must run once per stack (state that
    depends on its stack) says so with `shared_prefix = False`.
    """
    if a is b:
        return True
    return (type(a) is type(b) and a.id == b.id
            and getattr(type(a), "shared_prefix", True)
            and a.config.model_dump() == b.config.model_dump()
            and list(a.stack_keys) == list(b.stack_keys))


def build_tree(stacks: list[tuple[Stack, Sink]]) -> Branch:
    """The prefix tree of one input's stacks; the input's `emit` runs its root.

    Instances merged into a shared run get that run's counters.
    """
    root = _Node(None)
    for stack, sink in stacks:
        node = root
        for filt in stack.filters:
            node = node.child(filt)
        node.items.append(End(stack, sink))
    return _compress(root)


class _Node:
    """One filter of the uncompressed tree (the root has none)."""

    def __init__(self, filt: FilterPlugin | None) -> None:
        self.filter = filt
        self.items: list[_Node | End] = []

    def child(self, filt: FilterPlugin) -> _Node:
        for item in self.items:
            if isinstance(item, _Node) and same_filter(item.filter, filt):  # type: ignore[arg-type]
                if item.filter is not filt:
                    filt.counters = item.filter.counters  # type: ignore[union-attr]
                return item
        node = _Node(filt)
        self.items.append(node)
        return node


def _compress(node: _Node) -> Branch:
    """One `Branch` per run of filters that no stack leaves in the middle."""
    branch = Branch()
    while True:
        if node.filter is not None:
            branch.filters.append(node.filter)
        if len(node.items) == 1 and isinstance(node.items[0], _Node):
            node = node.items[0]
            continue
        break
    branch.items = [item if isinstance(item, End) else _compress(item) for item in node.items]
    return branch
