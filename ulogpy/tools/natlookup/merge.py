"""Conntrack records (NEW / UPDATE / DESTROY) into flow intervals.

JSON logs hold a flow as two records, NEW then DESTROY; SQL tables hold one
row per flow that may still be open.  Both come through here as `Record`s so
one piece of code decides what a flow's interval is.

Records are grouped by the full conntrack tuple, which the kernel keeps
unique among live entries; within a group they are replayed in time order.
`ct.id`, when known, tells two flows of one reused tuple apart.  A NEW that
arrives while an earlier flow of the same tuple is still open proves that
flow ended (its DESTROY was lost): it is closed at the new start.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from ulogpy.tools.natlookup.flows import SAME_FLOW_S, Flow

NEW, UPDATE, DESTROY = 1, 2, 4

#: (proto, orig saddr, orig sport, orig daddr, orig dport,
#:  reply saddr, reply sport, reply daddr, reply dport)
Tuple = tuple


@dataclass(slots=True)
class Record:
    event: int  # NEW, UPDATE or DESTROY
    tuple: Tuple
    ct_id: int | None
    start: float | None  # flow.start (kernel timestamp, or reception time for NEW)
    end: float | None  # flow.end
    seen: float | None = None  # reception time (the JSON `timestamp`), a fallback
    orig_bytes: int | None = None
    reply_bytes: int | None = None
    mark: int | None = None
    zone: int | None = None
    source: str = ""

    def when(self) -> float:
        """Where the record sits in time: its end for a DESTROY, else its start."""
        first = (self.end, self.seen, self.start) if self.event == DESTROY else (
            self.start, self.seen, self.end)
        return next((t for t in first if t is not None), 0.0)


def merge(records: list[Record]) -> list[Flow]:
    """Every flow the records describe, open ones with `end` None."""
    groups: dict[Tuple, list[Record]] = defaultdict(list)
    for rec in records:
        groups[rec.tuple].append(rec)
    flows: list[Flow] = []
    for group in groups.values():
        group.sort(key=lambda r: (r.when(), r.event))
        flows.extend(_replay(group))
    return flows


def _replay(group: list[Record]) -> list[Flow]:
    done: list[tuple[int | None, Flow]] = []
    open_id: int | None = None
    current: Flow | None = None
    for rec in group:
        if rec.event == DESTROY:
            if current is not None and not _same(open_id, current, rec):
                current.end = _first(rec.start, rec.end, rec.seen)
                done.append((open_id, current))
                current = None
            end = _first(rec.end, rec.seen)
            if current is None:
                if any(_duplicate(i, f, rec, end) for i, f in done):
                    continue
                current, open_id = _flow(rec), rec.ct_id
            current.end = end
            current.start = _min(current.start, rec.start)
            _counters(current, rec)
            done.append((open_id, current))
            current = None
        else:
            if current is not None:
                if _same(open_id, current, rec):
                    current.start = _min(current.start, rec.start)
                    if rec.event == UPDATE:
                        _counters(current, rec)
                    continue
                current.end = _first(rec.start, rec.seen)
                done.append((open_id, current))
            current, open_id = _flow(rec), rec.ct_id
    flows = [f for _, f in done]
    if current is not None:
        flows.append(current)
    return flows


def _same(open_id: int | None, current: Flow, rec: Record) -> bool:
    """Is `rec` about the open flow?  By ct.id when both have one, else by start time."""
    if open_id is not None and rec.ct_id is not None:
        return open_id == rec.ct_id
    if rec.event != NEW or current.start is None or rec.start is None:
        return True
    return abs(current.start - rec.start) < SAME_FLOW_S


def _duplicate(ct_id: int | None, flow: Flow, rec: Record, end: float | None) -> bool:
    """A DESTROY for a flow already closed (the same record read twice)."""
    if ct_id is not None and rec.ct_id is not None and ct_id != rec.ct_id:
        return False
    return end is not None and flow.end is not None and abs(flow.end - end) < SAME_FLOW_S


def _flow(rec: Record) -> Flow:
    proto, isrc, isport, rdst, rdport, _rsrc, _rsport, pub, pubport = rec.tuple
    flow = Flow(proto=proto, inside_ip=isrc, inside_port=isport, public_ip=pub,
                public_port=pubport, remote_ip=rdst, remote_port=rdport,
                start=_first(rec.start, rec.seen if rec.event != DESTROY else None),
                end=None, zone=rec.zone, mark=rec.mark, source=rec.source)
    _counters(flow, rec)
    return flow


def _counters(flow: Flow, rec: Record) -> None:
    if rec.orig_bytes is not None:
        flow.orig_bytes = rec.orig_bytes
    if rec.reply_bytes is not None:
        flow.reply_bytes = rec.reply_bytes
    if rec.mark is not None:
        flow.mark = rec.mark


def _first(*values: float | None) -> float | None:
    return next((v for v in values if v is not None), None)


def _min(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)
