"""Shared stack prefixes (ulogpy/daemon/prefix.py): run once, branch, same records out.

Recorded conntrack events go through the real NFCT input, IP2STR and MARK of a
configuration twice: with the filters shared between stacks (same ids) and with
each stack's own filters (other ids, the same options).  Every output must get
the same records in both, each shared filter must run once per event instead of
once per stack, and every configured instance must report the counters it reports
unshared.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.recorded import load_records
from tests.outputs import ListTransport
from ulogpy.config.load import load_config
from ulogpy.core.plugin import OutputPlugin
from ulogpy.core.registry import registry, validate_plugin_class
from ulogpy.core.stack import Pipeline, build_pipeline
from ulogpy.daemon.prefix import Branch, End, build_tree
from ulogpy.daemon.runner import attach
from ulogpy.delivery.options import queue_options
from ulogpy.netlink import conntrack as ct
from ulogpy.netlink import nlsock

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "conntrack"


class TKEEP(OutputPlugin):
    """Keeps every record of its stack (all keys, as JSON takes them) in `got`."""

    name = "TKEEP"
    wildcard_input = True
    options = queue_options()

    def configure(self) -> None:
        self.got: list[dict] = []
        self.transport = ListTransport(self.got)


@pytest.fixture(autouse=True)
def tkeep(monkeypatch: pytest.MonkeyPatch) -> None:
    validate_plugin_class(TKEEP)
    monkeypatch.setitem(registry(), TKEEP.name, TKEEP)


def recorded_events() -> list[dict]:
    """The recorded conntrack event messages, one datagram per message (as recv gives them)."""
    conf_dir = FIXTURES
    messages = []
    for rec in load_records(conf_dir):
        if rec["kind"] == "event":
            data = rec["data"]
            messages += [bytes(data[off:off + n]) for off, n, *_ in nlsock.iter_messages(data)]
    return messages


def build(tmp_path: Path, name: str, text: str) -> Pipeline:
    path = tmp_path / name
    path.write_text("[global]\n" + text + "[ct1]\nhash_enable=0\nevent_mask=5\n"
                    "[mark1]\nmark=0\n[markA]\nmark=0\n[markC]\nmark=0\n")
    return build_pipeline(load_config(str(path)))


def counting(pipeline: Pipeline) -> dict[int, int]:
    """Calls of each filter instance's `interp`, by id(instance)."""
    calls: dict[int, int] = {}
    for stack in pipeline.stacks:
        for filt in stack.filters:
            if id(filt) in calls:
                continue
            calls[id(filt)] = 0

            def wrapped(record, real=filt.interp, key=id(filt)):  # noqa: B008
                calls[key] += 1
                return real(record)
            filt.interp = wrapped
    return calls


def run(pipeline: Pipeline, messages: list[bytes]) -> dict[str, list[dict]]:
    """Feed the messages through NFCT's handler (every other event's mark set to 1)."""
    runner = attach(pipeline)
    inp = pipeline.inputs[0]
    emit = inp.emit
    seen = [0]

    def marked(record: dict) -> None:
        seen[0] += 1
        if seen[0] % 2 and "ct.mark" in record:
            record["ct.mark"] = 1
        emit(record)
    inp.emit = marked
    for msg in messages:
        event = ct.decode_ct(msg, 0, len(msg))
        if event is not None:
            inp._handle(msg, 0, len(msg))
    runner.after_batch()
    runner.shutdown()
    return {s.output.id: [without_clock(r) for r in s.output.got] for s in pipeline.stacks}


def without_clock(record: dict) -> dict:
    """The record without the times NFCT takes from the clock (no kernel timestamps here)."""
    return {k: v for k, v in record.items() if not k.startswith("flow.")}


SHARED = """\
stack=ct1:NFCT,ip2str1:IP2STR,mark1:MARK,capA:TKEEP
stack=ct1:NFCT,ip2str1:IP2STR,capB:TKEEP
stack=ct1:NFCT,ip2str1:IP2STR,mark1:MARK,capC:TKEEP
stack=ct1:NFCT,capD:TKEEP
"""
OWN = """\
stack=ct1:NFCT,ip2strA:IP2STR,markA:MARK,capA:TKEEP
stack=ct1:NFCT,ip2strB:IP2STR,capB:TKEEP
stack=ct1:NFCT,ip2strC:IP2STR,markC:MARK,capC:TKEEP
stack=ct1:NFCT,capD:TKEEP
"""


def test_shared_prefix_runs_once_and_branches(tmp_path: Path) -> None:
    messages = recorded_events()
    shared, own = build(tmp_path, "shared.conf", SHARED), build(tmp_path, "own.conf", OWN)
    shared_calls, own_calls = counting(shared), counting(own)
    got_shared, got_own = run(shared, messages), run(own, messages)
    events = shared.inputs[0].counters.get("emitted")
    assert events > 10 and events == own.inputs[0].counters.get("emitted")

    assert got_shared == got_own  # every output gets the same records, in the same order
    assert len(got_shared["capB"]) == len(got_shared["capD"]) == events
    stopped_events = events - len(got_shared["capA"])
    assert stopped_events > 0 and got_shared["capA"] == got_shared["capC"]
    assert all(r.get("ct.mark") != 1 for r in got_shared["capA"])
    # capB's and capD's records are their own: no key of another branch in them
    assert "orig.ip.saddr.str" in got_shared["capB"][0]
    assert "orig.ip.saddr.str" not in got_shared["capD"][0]

    ip2str, mark = shared.stacks[0].filters
    assert shared_calls[id(ip2str)] == events  # once per event, not once per stack
    assert shared_calls[id(mark)] == events  # after the branch: once for capA and capC
    assert sum(shared_calls.values()) == 2 * events  # the other instances never run
    assert sorted(own_calls.values()) == sorted([events] * 5)

    def report(pipeline: Pipeline) -> list[tuple[str, dict]]:
        return [(i.id[:-1] if i.id[-1] in "ABC" else i.id, i.counters.snapshot())
                for i in pipeline.instances() if i.kind.value == "filter"]
    # each configured instance reports what it reports unshared (stopped= on each MARK)
    assert [(n.replace("1", ""), c) for n, c in report(shared)] == \
        [(n, c) for n, c in report(own)]
    assert mark.counters.get("stopped") == stopped_events


def test_stop_in_the_shared_part_stops_every_stack_below(tmp_path: Path) -> None:
    pipeline = build(tmp_path, "stop.conf",
                     "stack=ct1:NFCT,mark1:MARK,ip2str1:IP2STR,capA:TKEEP\n"
                     "stack=ct1:NFCT,mark1:MARK,ip2str1:IP2STR,capB:TKEEP\n"
                     "stack=ct1:NFCT,capC:TKEEP\n")
    calls = counting(pipeline)
    got = run(pipeline, recorded_events())
    events = pipeline.inputs[0].counters.get("emitted")
    mark, ip2str = pipeline.stacks[0].filters
    passed = len(got["capA"])
    assert 0 < passed < events and got["capA"] == got["capB"]
    assert len(got["capC"]) == events  # the stack without MARK gets every event
    assert calls[id(mark)] == events and calls[id(ip2str)] == passed
    assert sum(calls.values()) == events + passed  # once for both stacks
    other_mark = pipeline.stacks[1].filters[0]
    assert other_mark is not mark  # still its own configured instance ...
    assert other_mark.counters.get("stopped") == events - passed  # ... reporting the stop


def test_tree_shape_follows_the_first_difference(tmp_path: Path) -> None:
    pipeline = build(tmp_path, "shape.conf",
                     "stack=ct1:NFCT,ip2str1:IP2STR,mark1:MARK,capA:TKEEP\n"
                     "stack=ct1:NFCT,ip2str1:IP2STR,capB:TKEEP\n"
                     "stack=ct1:NFCT,ip2strX:IP2STR,mark1:MARK,capC:TKEEP\n")
    root = build_tree([(s, lambda item: None) for s in pipeline.stacks])
    assert root.filters == []  # the first filters differ by id: two branches at the input
    first, third = root.items
    assert isinstance(first, Branch) and isinstance(third, Branch)
    assert [f.id for f in first.filters] == ["ip2str1"]
    assert [type(i).__name__ for i in first.items] == ["Branch", "End"]
    assert isinstance(first.items[1], End) and first.items[1].stack.output.id == "capB"
    assert [f.id for f in third.filters] == ["ip2strX", "mark1"]
    assert [s.output.id for s in root.stacks] == ["capA", "capB", "capC"]
