"""NFCT's flow state (`ctflows`) fed with the conntrack messages recorded from the kernel.

The fixtures come from scripts/record_ct_fixtures.py (tests/fixtures/conntrack):
NEW and UPDATE events while traffic runs, a table dump, one late flow, then a
flush's DESTROYs.  Expectations come from the manifest (ports, phases' times)
and from the decoded messages themselves, never from a stored result.
"""

from __future__ import annotations

import struct
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import pytest
from ulogpy.plugins.input.ctflows import ALIVE, FlowTable, LiveFlows, ns_split

from tests.fixtures.recorded import load_manifest, load_records
from ulogpy.core.plugin import Counters
from ulogpy.netlink import attrs, nlsock
from ulogpy.netlink import conntrack as ct
from ulogpy.netlink.conntrack import CtEvent, decode_ct

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "conntrack"
#: The fixed "now" of these tests (ns): after every recorded phase.
NOW_NS = 1_900_000_000_123_456_789
NOW = ns_split(NOW_NS)
_BE32 = struct.Struct("!I").pack
_BE64 = struct.Struct("!Q").pack


def clock() -> int:
    return NOW_NS


@cache
def manifest() -> dict:
    return load_manifest(FIX)


@cache
def messages() -> tuple[tuple[str, bytes], ...]:
    """(phase, message bytes) of every recorded conntrack message, in order."""
    out = []
    for rec in load_records(FIX):
        for off, mlen, *_ in nlsock.iter_messages(rec["data"]):
            if decode_ct(rec["data"], off, mlen) is not None:
                out.append((rec["phase"], rec["data"][off:off + mlen]))
    return tuple(out)


def events(phase: str, kind: int | None = None) -> list[CtEvent]:
    """Fresh events (their `values` are ours to change) of one phase, maybe one kind."""
    evs = [decode_ct(msg) for p, msg in messages() if p == phase]
    return [ev for ev in evs if ev is not None and kind in (None, ev.event)]


def sport_of(name: str) -> int:
    flows = [*manifest()["flows"], manifest()["late_flow"]]
    return next(f["sport"] for f in flows if f["name"] == name)


def by_sport(evs: list[CtEvent], sport: int) -> CtEvent:
    (ev,) = [ev for ev in evs if ev.values.get("orig.l4.sport") == sport]
    return ev


def message_of(phase: str, kind: int, sport: int) -> bytes:
    found = [msg for p, msg in messages() if p == phase
             and (ev := decode_ct(msg)) is not None and ev.event == kind
             and ev.values.get("orig.l4.sport") == sport]
    assert len(found) == 1
    return found[0]


def attribute(msg: bytes, atype: int) -> bytes:
    """The whole top-level attribute `atype` (header and padding included)."""
    for t, _flags, start, end in attrs.iter_attrs(msg, 20, len(msg)):
        if t == atype:
            return msg[start - 4:(end + 3) & ~3]
    raise KeyError(atype)


def patch(msg: bytes, path: tuple[int, ...], value: bytes) -> bytes:
    """Overwrite the payload of the attribute at `path` (types, outermost first)."""
    start, end = 20, len(msg)
    for atype in path:
        start, end = next((s, e) for t, _, s, e in attrs.iter_attrs(msg, start, end)
                          if t == atype)
    assert end - start == len(value)
    return msg[:start] + value + msg[end:]


def with_attribute(msg: bytes, extra: bytes) -> bytes:
    """`msg` with one more top-level attribute, its nlmsg_len grown to match."""
    grown = msg + extra
    return struct.pack("=I", len(grown)) + grown[4:]


def config(**options) -> SimpleNamespace:
    from ulogpy.plugins.input.nfct import NFCT

    cfg = {o.name: o.default for o in NFCT.options}
    cfg.update(options)
    return SimpleNamespace(**cfg)


def plugin(**options):
    """An NFCT instance that never opens a socket: `receive` is fed by hand."""
    from ulogpy.plugins.input.nfct import NFCT

    inp = NFCT("ct1", config(**options))
    inp.configure()
    out: list[dict] = []
    inp.emit = out.append
    return inp, out


# ------------------------------------------------------------------ hash mode: FlowTable


def test_recording_has_what_these_tests_need() -> None:
    news = events("traffic", ct.EVENT_NEW)
    assert len(news) == len(manifest()["flows"])
    assert all(ev.start_ns is None for ev in news)  # the kernel stamps DESTROYs, not NEWs
    assert all(ev.start_ns and ev.stop_ns for ev in events("flush", ct.EVENT_DESTROY))


def test_hash_new_then_destroy_gives_one_record_with_the_kernels_times() -> None:
    counters = Counters()
    table = FlowTable(100, counters, clock)
    sport = sport_of("tcp4")
    new = by_sport(events("traffic", ct.EVENT_NEW), sport)
    table.track(new.tuple_key, new.start_ns, message_of("traffic", ct.EVENT_NEW, sport))
    assert table.get(new.tuple_key)[:2] == NOW  # no kernel start in a NEW: the clock's

    destroy = by_sport(events("flush", ct.EVENT_DESTROY), sport)
    assert destroy.tuple_key == new.tuple_key  # the same connection, by its tuples
    record = destroy.values
    table.destroy(destroy, record)
    phases = manifest()["phases_ns"]
    assert record["ct.event"] == ct.EVENT_DESTROY
    assert (record["flow.start.sec"], record["flow.start.usec"]) == ns_split(destroy.start_ns)
    assert phases["traffic"] <= destroy.start_ns <= phases["dump"]
    assert (record["flow.end.sec"], record["flow.end.usec"]) == ns_split(destroy.stop_ns)
    assert phases["flush"] <= destroy.stop_ns <= phases["end"]
    assert record["orig.l4.sport"] == sport and record["orig.l4.dport"] == 5001
    assert len(table) == 0 and counters.snapshot() == {}


def test_hash_destroy_without_kernel_times_takes_the_start_the_table_kept() -> None:
    counters = Counters()
    table = FlowTable(100, counters, clock)
    sport = sport_of("udp4")
    dumped = by_sport(events("dump"), sport)
    table.track(dumped.tuple_key, dumped.start_ns, message_of("dump", ct.EVENT_UPDATE, sport))
    destroy_msg = message_of("flush", ct.EVENT_DESTROY, sport)
    bare = destroy_msg[:20] + b"".join(  # the DESTROY without its CTA_TIMESTAMP
        attribute(destroy_msg, t) for t, *_ in attrs.iter_attrs(destroy_msg, 20,
                                                                len(destroy_msg))
        if t != ct.CTA_TIMESTAMP)
    bare = struct.pack("=I", len(bare)) + bare[4:]
    destroy = decode_ct(bare)
    assert destroy is not None and destroy.start_ns is None and destroy.stop_ns is None
    record = destroy.values
    table.destroy(destroy, record)
    assert (record["flow.start.sec"], record["flow.start.usec"]) == ns_split(dumped.start_ns)
    assert (record["flow.end.sec"], record["flow.end.usec"]) == NOW
    assert counters.get("destroy_untracked") == 0


def test_hash_whole_recording_tracks_each_flow_once_and_every_destroy_finds_it() -> None:
    counters = Counters()
    table = FlowTable(100, counters, clock)
    for phase in ("traffic", "late"):
        for ev in events(phase):
            table.track(ev.tuple_key, ev.start_ns, b"m")
    flows = manifest()["flows"]
    assert len(table) == len(flows) + 1  # and the late one
    destroys = events("flush", ct.EVENT_DESTROY)
    assert len(destroys) == len(table)
    for ev in destroys:
        table.destroy(ev, ev.values)
    assert len(table) == 0 and counters.snapshot() == {}


def test_hash_full_bound_counts_what_it_cannot_track() -> None:
    counters = Counters()
    bound = 3
    table = FlowTable(bound, counters, clock)
    traffic = events("traffic")
    first: list[bytes] = []
    for ev in traffic:
        if ev.tuple_key not in first:
            first.append(ev.tuple_key)
    beyond = [ev for ev in traffic if ev.tuple_key not in first[:bound]]
    for ev in traffic:
        table.track(ev.tuple_key, ev.start_ns, b"m")
    assert len(table) == bound
    assert [k for k in first if k in table] == first[:bound]
    assert counters.get("hash_full") == len(beyond) > 0  # NEW and UPDATE of each untracked
    # The DESTROY of an untracked flow is still written, with the kernel's own start.
    untracked = next(ev for ev in events("flush", ct.EVENT_DESTROY)
                     if ev.tuple_key not in table)
    table.destroy(untracked, untracked.values)
    assert untracked.values["flow.start.sec"] == untracked.start_ns // 10**9
    assert counters.get("destroy_untracked") == 1


def test_hash_dump_tells_the_flows_that_vanished() -> None:
    counters = Counters()
    table = FlowTable(100, counters, clock)
    dumped = [decode_ct(msg) for p, msg in messages() if p == "dump"]
    for ev, (_p, msg) in zip(dumped, [m for m in messages() if m[0] == "dump"], strict=True):
        table.track(ev.tuple_key, ev.start_ns, msg)
    gone = {sport_of("udp4"), sport_of("tcp6")}
    seen = {ev.tuple_key for ev in dumped if ev.values.get("orig.l4.sport") not in gone}
    records = list(table.vanished(seen))
    assert sorted(r["orig.l4.sport"] for r in records) == sorted(gone)
    for r in records:
        ev = by_sport(dumped, r["orig.l4.sport"])
        assert r["ct.event"] == ct.EVENT_DESTROY
        assert (r["flow.start.sec"], r["flow.start.usec"]) == ns_split(ev.start_ns)
        assert (r["flow.end.sec"], r["flow.end.usec"]) == NOW
        assert r["ct.id"] == ev.values["ct.id"] and r["orig.ip.saddr"] == ev.values[
            "orig.ip.saddr"]
        assert decode_ct(r["ct"]).tuple_key == ev.tuple_key  # the message it was kept as
    assert counters.get("vanished") == 2 and len(table) == len(dumped) - 2


# ------------------------------------------------------------- event mode: LiveFlows


def live_after_traffic(skip: int | None = None) -> tuple[LiveFlows, Counters]:
    """The live set after every traffic NEW, except the flow of source port `skip`."""
    counters = Counters()
    live = LiveFlows(counters, clock)
    for i, ev in enumerate(events("traffic", ct.EVENT_NEW)):
        if ev.values.get("orig.l4.sport", -1) != skip:
            live.started(ev, 1000 + i, i)
    return live, counters


def test_resync_after_nothing_lost_reports_nothing() -> None:
    live, counters = live_after_traffic()
    assert list(live.resync(events("dump"))) == []
    assert len(live) == len(manifest()["flows"]) and counters.snapshot() == {}


def test_resync_finds_a_lost_new() -> None:
    sport = sport_of("udp4")
    live, counters = live_after_traffic(skip=sport)
    dumped = events("dump")
    (record,) = live.resync(dumped)
    ev = by_sport(events("dump"), sport)
    assert record["ct.event"] == ct.EVENT_NEW and record["ct.resync"] == 1
    assert record["orig.l4.sport"] == sport and record["orig.l4.dport"] == 5002
    assert record["ct.id"] == ev.values["ct.id"]
    assert (record["flow.start.sec"], record["flow.start.usec"]) == ns_split(ev.start_ns)
    assert ev.tuple_key in live
    assert counters.snapshot() == {"resync_new": 1}
    assert list(live.resync(events("dump"))) == []  # reported once


def test_resync_finds_a_lost_destroy() -> None:
    live, counters = live_after_traffic()
    late = manifest()["late_flow"]
    (new,) = [ev for ev in events("late", ct.EVENT_NEW)]
    live.started(new, 1_795_727_232, 804_652)
    (record,) = live.resync(events("dump"))  # the dump was taken before the late flow
    assert record["ct.event"] == ct.EVENT_DESTROY and record["ct.resync"] == 1
    assert record["orig.l4.sport"] == late["sport"] and record["orig.l4.dport"] == late["dport"]
    assert record["reply.l4.sport"] == late["reply_sport"]
    assert record["ct.id"] == new.values["ct.id"]
    assert (record["flow.start.sec"], record["flow.start.usec"]) == (1_795_727_232, 804_652)
    assert (record["flow.end.sec"], record["flow.end.usec"]) == NOW
    assert "orig.raw.pktcount" not in record  # a resync knows the identity, not counters
    assert new.tuple_key not in live and counters.snapshot() == {"resync_destroy": 1}


def test_resync_tells_a_tuple_reused_by_another_connection() -> None:
    sport = sport_of("tcp4")
    live, counters = live_after_traffic()
    old_id = by_sport(events("traffic", ct.EVENT_NEW), sport).values["ct.id"]
    dump_msg = message_of("dump", ct.EVENT_UPDATE, sport)
    reused = decode_ct(patch(dump_msg, (ct.CTA_ID,), _BE32(old_id ^ 0x5A5A5A5A)))
    dumped = [ev for ev in events("dump") if ev.tuple_key != reused.tuple_key] + [reused]
    destroy, new = live.resync(dumped)
    assert destroy["ct.event"] == ct.EVENT_DESTROY and destroy["ct.id"] == old_id
    assert new["ct.event"] == ct.EVENT_NEW and new["ct.id"] == old_id ^ 0x5A5A5A5A
    assert destroy["orig.l4.sport"] == new["orig.l4.sport"] == sport
    assert destroy["ct.resync"] == new["ct.resync"] == 1
    assert counters.snapshot() == {"resync_new": 1, "resync_destroy": 1}
    assert list(live.resync(dumped)) == []  # the new connection is the one known now


def test_event_mode_plugin_keeps_the_live_set() -> None:
    inp, out = plugin(hash_enable=0)
    for phase in ("traffic", "late", "flush"):
        for p, msg in messages():
            if p == phase:
                inp.receive(msg)
    news = [r for r in out if r["ct.event"] == ct.EVENT_NEW]
    destroys = [r for r in out if r["ct.event"] == ct.EVENT_DESTROY]
    assert len(news) == len(destroys) == len(manifest()["flows"]) + 1
    assert len(inp.live) == 0  # every flow seen starting was seen ending
    assert inp.counters.get("updates_ignored") > 0 and inp.counters.get("failed") == 0


# --------------------------------------------------- 64-bit start seconds (issue 11, item 8)


def new_with_start(start_ns: int) -> bytes:
    """The recorded NEW of tcp4 carrying a CTA_TIMESTAMP (as its DESTROY has), start set."""
    sport = sport_of("tcp4")
    stamp = attribute(message_of("flush", ct.EVENT_DESTROY, sport), ct.CTA_TIMESTAMP)
    msg = with_attribute(message_of("traffic", ct.EVENT_NEW, sport), stamp)
    return patch(msg, (ct.CTA_TIMESTAMP, ct.CTA_TIMESTAMP_START), _BE64(start_ns))


@pytest.mark.parametrize("start_ns", [(1 << 32) * 10**9 + 250_000_000_999, (1 << 64) - 1])
def test_new_whose_start_needs_more_than_32_bit_seconds(start_ns: int) -> None:
    msg = new_with_start(start_ns)
    assert decode_ct(msg).event == ct.EVENT_NEW and decode_ct(msg).start_ns == start_ns
    sec, usec = ns_split(start_ns)
    assert sec >= 1 << 32
    inp, out = plugin(hash_enable=0)
    inp.receive(msg)  # raised struct.error from the pack with 32-bit seconds
    (record,) = out
    assert (record["flow.start.sec"], record["flow.start.usec"]) == (sec, usec)
    assert ALIVE.unpack(inp.live.alive[decode_ct(msg).tuple_key])[:2] == (sec, usec)
    (lost,) = inp.live.resync([])  # its DESTROY, found by a resync, has the same start
    assert (lost["flow.start.sec"], lost["flow.start.usec"]) == (sec, usec)
    assert lost["orig.l4.sport"] == sport_of("tcp4")
