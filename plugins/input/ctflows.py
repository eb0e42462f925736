"""NFCT's flow state, apart from its socket: what it remembers of live connections.

Two memories, one per mode, both keyed by `CtEvent.tuple_key` (the original and
reply tuples as the kernel sent them, plus the zone):

* `FlowTable`, hash mode: each live flow's start and latest message, so that one
  record per connection can be written at DESTROY, and the flows that vanished
  without a DESTROY (lost in an overrun) can be told from a table dump;
* `LiveFlows`, event mode with NEW and DESTROY: a few packed numbers per flow seen
  starting, so that after an overrun a dump tells which NEW and which DESTROY
  events were lost.

Nothing here touches a socket, the loop or the log: the plugin (`nfct.NFCT`)
reads the kernel and emits; these classes decide what the records say and count
what they notice on the plugin's `Counters`.  The clock is a parameter, so the
tests can replay recorded messages at a fixed time.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable, Iterator

from ulogpy.core.plugin import Counters
from ulogpy.netlink import conntrack as ct

NEW, DESTROY = ct.EVENT_NEW, ct.EVENT_DESTROY
#: The keys of a DESTROY that only a resync saw (the flow's identity, no counters).
FLOW_KEYS = (
    "orig.ip.saddr", "orig.ip.daddr", "orig.ip.protocol", "orig.l4.sport", "orig.l4.dport",
    "reply.ip.saddr", "reply.ip.daddr", "reply.ip.protocol", "reply.l4.sport",
    "reply.l4.dport", "icmp.code", "icmp.type", "ct.mark", "ct.id", "oob.family",
    "oob.protocol",
)
#: What event mode keeps of a live flow besides its tuple key: start sec, start usec,
#: ct.id, ct.mark, zone, family.  Packed, because a firewall may hold a million flows:
#: about 244 bytes each with the key, where the NEW message in a tuple took 610.
#: The seconds are 64-bit: CTA_TIMESTAMP is a be64 count of nanoseconds, so its seconds
#: need more than 32 bits from 2106 on, or in any damaged message; a u32 field made the
#: pack raise `struct.error` out of the event handler.  Wrapping them to ulogd's u32
#: instead would make a resync DESTROY report another start than the NEW record did
#: (records carry the value unwrapped, in every mode); 4 more bytes per flow is cheaper
#: than that.  The other fields come from be32 / be16 / u8 attributes and always fit.
ALIVE = struct.Struct("=QIIIHB")
_ALIVE_PACK = ALIVE.pack
_ALIVE_ID = struct.Struct("=12xI").unpack_from

Clock = Callable[[], int]


def ns_split(ns: int) -> tuple[int, int]:
    """(seconds, microseconds) of a time in ns since the epoch."""
    return ns // 1_000_000_000, (ns // 1000) % 1_000_000


def record_of(message: bytes) -> dict:
    """The record of a conntrack message the table kept (it decoded once already)."""
    event = ct.decode_ct(message)
    record = event.values if event is not None else {}
    record["ct"] = message
    return record


def lost_destroy_values(key: bytes, packed: bytes) -> dict:
    """The `FLOW_KEYS` of a flow `LiveFlows` kept, decoded from a message rebuilt from it."""
    _sec, _usec, ct_id, mark, zone, family = ALIVE.unpack(packed)
    tuples = key[:-2] if zone else key  # (the key ends with the zone when there is one)
    event = ct.decode_ct(ct.build_destroy_message(family, tuples, ct_id, mark, zone))
    values = event.values if event is not None else {}
    return {k: values[k] for k in FLOW_KEYS if k in values}


class FlowTable:
    """Hash mode: tuple key -> (start sec, start usec, latest message) of the live flows.

    The message as the kernel sent it, not its record: a record takes six times the
    memory, and is only needed again when a flow vanishes unseen.  At most
    `max_entries` flows (`hash_max_entries`); a flow beyond is counted `hash_full`
    and not tracked (its DESTROY is then written without the start NEW gave).
    """

    def __init__(self, max_entries: int, counters: Counters,
                 clock: Clock = time.time_ns) -> None:
        self.max_entries = max_entries
        self.counters = counters
        self.clock = clock
        self.flows: dict[bytes, tuple[int, int, bytes]] = {}

    def __len__(self) -> int:
        return len(self.flows)

    def __contains__(self, key: bytes) -> bool:
        return key in self.flows

    def get(self, key: bytes) -> tuple[int, int, bytes] | None:
        return self.flows.get(key)

    def track(self, key: bytes, start_ns: int | None, message: bytes) -> None:
        """Remember a live flow (its start, or now) or refresh what is known of it."""
        flows = self.flows
        entry = flows.get(key)
        if entry is not None:
            flows[key] = (entry[0], entry[1], message)
        elif len(flows) >= self.max_entries:
            self.counters.add("hash_full")
        else:
            flows[key] = (*ns_split(start_ns or self.clock()), message)

    def destroy(self, event: ct.CtEvent, record: dict) -> None:
        """Complete `record`, the DESTROY of `event`, with the start and end of its flow,
        and forget the flow.  A DESTROY of a flow not tracked counts `destroy_untracked`."""
        entry = self.flows.pop(event.tuple_key, None)
        record["ct.event"] = DESTROY
        if event.start_ns:  # the kernel's own start time beats our reception time of NEW
            record["flow.start.sec"], record["flow.start.usec"] = ns_split(event.start_ns)
        elif entry is not None:
            record["flow.start.sec"], record["flow.start.usec"] = entry[0], entry[1]
        if entry is None:
            self.counters.add("destroy_untracked")
        sec, usec = ns_split(event.stop_ns or self.clock())
        record["flow.end.sec"] = sec
        record["flow.end.usec"] = usec

    def vanished(self, seen: set[bytes]) -> Iterator[dict]:
        """The DESTROY records of the tracked flows missing from a dump (`seen`: its keys).

        ulogd emits these with the start only; ulogpy also sets the end to the time
        the disappearance was noticed.  Each is forgotten and counted `vanished`.
        """
        end_sec, end_usec = ns_split(self.clock())
        for key in [k for k in self.flows if k not in seen]:
            start_sec, start_usec, message = self.flows.pop(key)
            record = record_of(message)
            record["ct.event"] = DESTROY
            record["flow.start.sec"], record["flow.start.usec"] = start_sec, start_usec
            record["flow.end.sec"], record["flow.end.usec"] = end_sec, end_usec
            self.counters.add("vanished")
            yield record


class LiveFlows:
    """Event mode with NEW and DESTROY: tuple key -> `ALIVE` of the flows seen starting.

    Only what a resync needs: whether a dumped flow was reported (same key and
    ct.id), and enough to rebuild the DESTROY of a flow the dump no longer has.
    """

    def __init__(self, counters: Counters, clock: Clock = time.time_ns) -> None:
        self.counters = counters
        self.clock = clock
        self.alive: dict[bytes, bytes] = {}

    def __len__(self) -> int:
        return len(self.alive)

    def __contains__(self, key: bytes) -> bool:
        return key in self.alive

    def started(self, event: ct.CtEvent, sec: int, usec: int) -> None:
        """A NEW was reported with this start."""
        values = event.values
        self.alive[event.tuple_key] = _ALIVE_PACK(sec, usec, values["ct.id"],
                                                  values["ct.mark"], event.zone, event.family)

    def ended(self, key: bytes) -> None:
        """A DESTROY was reported."""
        self.alive.pop(key, None)

    def resync(self, dumped: Iterable[ct.CtEvent]) -> Iterator[dict]:
        """The records of the NEW and DESTROY events lost before a dump, marked `ct.resync`.

        `dumped`: the table as the kernel dumped it (filtered as the events are).
        A flow dumped but not known, or known under another ct.id (its tuple was
        reused: the old connection ended unseen), gets a NEW, counted `resync_new`;
        a known flow the dump lacks gets a DESTROY that ends at the time of the dump,
        counted `resync_destroy`.  Afterwards the set is the dump's.
        """
        alive = self.alive
        now: dict[bytes, ct.CtEvent] = {event.tuple_key: event for event in dumped}
        end_sec, end_usec = ns_split(self.clock())
        for key, event in now.items():
            known = alive.get(key)
            if known is not None:
                if _ALIVE_ID(known)[0] == event.values["ct.id"]:
                    continue  # the same connection, already reported
                yield self._lost_destroy(key, alive.pop(key), end_sec, end_usec)
            record = event.values
            sec, usec = ns_split(event.start_ns or self.clock())
            record.update({"ct.event": NEW, "flow.start.sec": sec, "flow.start.usec": usec,
                           "ct.resync": 1})
            self.started(event, sec, usec)
            self.counters.add("resync_new")
            yield record
        for key in [k for k in alive if k not in now]:
            yield self._lost_destroy(key, alive.pop(key), end_sec, end_usec)

    def _lost_destroy(self, key: bytes, packed: bytes, end_sec: int, end_usec: int) -> dict:
        start_sec, start_usec = ALIVE.unpack(packed)[:2]
        record = lost_destroy_values(key, packed)
        record.update({"ct.event": DESTROY, "flow.start.sec": start_sec,
                       "flow.start.usec": start_usec, "flow.end.sec": end_sec,
                       "flow.end.usec": end_usec, "ct.resync": 1})
        self.counters.add("resync_destroy")
        return record
