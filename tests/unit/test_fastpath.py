"""The compiled fast path and the pure-Python path give identical results.

`ulogpy._fastpath` is driven by the tables the Python code declares; these
properties check, on the recorded kernel messages and on fuzzed mutations of
them, that both paths produce the same records (same keys in the same order,
same values), the same output bytes, and the same errors (class and message).
They run only where the extension is built (scripts/setup builds it; the daemon
test `test_start_says_once_which_path_runs` fails where it should be and is not).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ulogpy.plugins.filter import ip2str as ip2str_module
from ulogpy.plugins.output.json import compiled_line

from tests.fixtures.recorded import load_records
from tests.unit.test_fast_paths import _messages
from ulogpy import fastpath
from ulogpy.config.load import load_config
from ulogpy.core.stack import build_pipeline
from ulogpy.netlink import attrs, conntrack, nflog, nlsock
from ulogpy.netlink.attrs import MalformedMessage
from ulogpy.render.jsontext import json_string, key_prefix

pytestmark = pytest.mark.skipif(fastpath.compiled is None,
                                reason=f"compiled fast path absent: {fastpath.reason}")

SLOTS = ("event", "msg_type", "flags", "family", "start_ns", "stop_ns", "event_ns",
         "tuple_key", "zone", "status", "icmp_id", "icmpv6_type", "icmpv6_code")


MESSAGES = _messages()
PURE_WALK = attrs.table_walker(conntrack.CT_TABLE, compiled=False)
FAST_WALK = attrs.table_walker(conntrack.CT_TABLE)


def _walked(walker, buf: bytes, start: int, end: int):
    out: dict = {}
    try:
        walker(buf, start, end, out)
    except MalformedMessage as exc:
        return ("error", type(exc), str(exc), list(out.items()))
    return list(out.items())


def _decoded(decoder: conntrack.CtDecoder, buf: bytes):
    try:
        ev = decoder.decode(buf)
    except MalformedMessage as exc:
        return ("error", type(exc), str(exc))
    if ev is None:
        return None
    return (list(ev.values.items()), *(getattr(ev, s) for s in SLOTS))


def test_the_compiled_walker_is_the_one_decoders_use() -> None:
    assert attrs.is_compiled(FAST_WALK) and not attrs.is_compiled(PURE_WALK)
    assert attrs.is_compiled(conntrack.CtDecoder().walk)
    assert conntrack.CtDecoder().attempts == 0  # nothing to learn: the walker is faster


def test_recorded_messages_walk_and_decode_alike() -> None:
    pure, learnt, fast = (conntrack.CtDecoder(learn=False, compiled=False),
                          conntrack.CtDecoder(compiled=False), conntrack.CtDecoder())
    for m in MESSAGES:
        assert _walked(FAST_WALK, m, 20, len(m)) == _walked(PURE_WALK, m, 20, len(m))
        want = _decoded(pure, m)
        assert _decoded(fast, m) == want
        assert _decoded(learnt, m) == want
    assert len(MESSAGES) > 50


def _decoded_at(decoder: conntrack.CtDecoder, *args):
    try:
        ev = decoder.decode(*args)
    except (MalformedMessage, TypeError) as exc:
        return ("error", type(exc), str(exc))
    return None if ev is None else (list(ev.values.items()), *(getattr(ev, s) for s in SLOTS))


def test_the_compiled_decode_frames_messages_alike() -> None:
    """CtDecode's own framing (the range, nlmsg_len, the message type, the buffer type)
    gives what the pure decode gives, and every slot of its events is set."""
    pure, fast = conntrack.CtDecoder(learn=False, compiled=False), conntrack.CtDecoder()
    assert type(fast.decode).__name__ == "CtDecode"
    m = next(m for m in MESSAGES if conntrack.decode_ct(m) is not None)
    buf = b"\0" * 8 + m + b"\xff" * 8
    short, long = bytearray(buf), bytearray(buf)
    short[8:12] = (19).to_bytes(4, "little")
    long[8:12] = (len(m) + 9).to_bytes(4, "little")
    other = bytearray(buf)
    other[12:14] = (0x0105).to_bytes(2, "little")  # ctnetlink GET: not an event
    cases = [(buf, 8, len(m)), (buf, 8), (buf, 8, None), (buf, 8, len(m) + 8), (buf, -1, 20),
             (buf, 0, len(buf) + 1), (buf, len(buf) + 1), (buf, 8, 19), (buf, 8, -1),
             (bytes(short), 8, len(m)), (bytes(long), 8, len(m) + 8),
             (bytes(long), 8, len(m)), (bytes(other), 8, len(m)), (bytearray(buf), 8, len(m)),
             (memoryview(buf), 8, len(m)), (buf, 8.0, len(m)), (buf, 2**70, 1)]
    results = []
    for args in cases:
        results.append(_decoded_at(pure, *args))
        assert _decoded_at(fast, *args) == results[-1], args
    assert results[0] is not None and results[0] == results[1] == results[13]
    assert results[12] is None and results[9][0] == "error"
    ev = fast.decode(m)
    assert all(getattr(ev, slot, AttributeError) is not AttributeError
               for slot in conntrack.CtEvent.__slots__)
    assert repr(ev) == repr(pure.decode(m))


def _mutations(data: st.DataObject, message: bytes) -> bytes:
    b = bytearray(message)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "length"]))
        if op == "flip" and len(b) > 16:
            b[data.draw(st.integers(16, len(b) - 1))] = data.draw(st.integers(0, 255))
        elif op == "cut" and len(b) > 20:
            del b[data.draw(st.integers(20, len(b) - 1)):]
        elif op == "insert":
            at = data.draw(st.integers(16, len(b)))
            b[at:at] = data.draw(st.binary(min_size=1, max_size=12))
        elif op == "length" and len(b) > 24:  # an attribute header's length word
            at = data.draw(st.integers(20, len(b) - 4)) & ~3
            b[at:at + 2] = data.draw(st.integers(0, 0xFFFF)).to_bytes(2, "little")
    return bytes(b)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzzed_messages_walk_and_decode_alike(data: st.DataObject) -> None:
    message = _mutations(data, data.draw(st.sampled_from(MESSAGES)))
    end = data.draw(st.integers(20, len(message))) if len(message) > 20 else len(message)
    assert _walked(FAST_WALK, message, 20, end) == _walked(PURE_WALK, message, 20, end)
    assert _decoded(conntrack.CtDecoder(), message) == \
        _decoded(conntrack.CtDecoder(learn=False, compiled=False), message)


def test_random_damage_everywhere_walks_alike() -> None:
    """Many more mutations than hypothesis runs, seeded: one byte anywhere, any value."""
    rng = random.Random(16)
    for m in MESSAGES:
        for _ in range(200):
            b = bytearray(m)
            b[rng.randrange(len(b))] = rng.randrange(256)
            buf = bytes(b)
            assert _walked(FAST_WALK, buf, 20, len(buf)) == _walked(PURE_WALK, buf, 20, len(buf))


def test_a_table_the_walker_cannot_take_is_refused() -> None:
    with pytest.raises(ValueError):
        fastpath.compiled.Walker({1: (0, "x", None, 2, ">h")}, MalformedMessage)  # signed
    with pytest.raises(ValueError):
        fastpath.compiled.Walker({1: (9, "x", None, 2, "")}, MalformedMessage)


# ------------------------------------------------------------------ JSON lines

@pytest.fixture(scope="module")
def json_outputs(tmp_path_factory: pytest.TempPathFactory):
    """JSON instances of the stacks the benchmarks run, with and without time stamps."""
    d = tmp_path_factory.mktemp("fastjson")
    outs = []
    for n, extra in enumerate(["", "timestamp=0\n", "eventv1=1\ndevice=\"fw\tone\"\n",
                               "device=\"pare-feu \u00e9\"\n"]):  # (a line not ASCII throughout)
        conf = d / f"j{n}.conf"
        conf.write_text("[global]\nstack=ct1:NFCT,ip2str1:IP2STR,json1:JSON\n[ct1]\n"
                        f'[json1]\nfile="{d}/j{n}.json"\n{extra}')
        pipeline = build_pipeline(load_config(str(conf)))
        outs.append((pipeline.stacks[0].filters[0], pipeline.stacks[0].output))
    assert all(out._line is not None for _f, out in outs)
    return outs


def _lines(out, record: dict) -> tuple:
    """(compiled line, generated-function line, field-by-field line): text or error class."""
    def attempt(render) -> object:
        try:
            return render(record)
        except Exception as exc:  # noqa: BLE001 - the class is what is compared
            return type(exc)

    compiled = out._line
    try:
        first = attempt(out.render)  # the instance's (`_render_now` where it is set)
        out._line = None
        second = attempt(lambda r: type(out).render(out, r))
    finally:
        out._line = compiled
    return first, second, attempt(out._generic)


def _recorded_records(ip2str) -> list[dict]:
    records = []
    for m in MESSAGES:
        ev = conntrack.decode_ct(m)
        if ev is not None:
            rec = dict(ev.values, **{"ct.event": ev.event, "flow.start.sec": 1795729219})
            ip2str.interp(rec)
            records.append(rec)
    return records


def test_recorded_records_give_the_same_json_bytes(json_outputs) -> None:
    for ip2str, out in json_outputs:
        records = _recorded_records(ip2str)
        odd = dict(records[0])  # every ASCII character, then some that are not ASCII
        odd["reply.ip.saddr.str"] = "".join(map(chr, range(128))) + "\u00e9\u20ac\U0001f600"
        long = dict(records[0])  # a line past the writer's 2 KiB on the stack, grown twice
        long["reply.ip.saddr.str"] = '\x01a"\\' * 1500
        for rec in [*records, long, odd]:
            compiled, generated, generic = _lines(out, rec)
            assert compiled == generated == generic
            assert isinstance(compiled, str)
        assert '\\u001F !\\"#' in compiled and "\\b\\t\\n\\u000B\\f\\r" in compiled


TEXT = st.text(st.characters(blacklist_categories=()), max_size=12)
VALUES = st.one_of(
    st.integers(-(2**70), 2**70), st.booleans(), st.none(), TEXT,
    st.binary(max_size=4), st.floats(allow_nan=False),
)


@settings(max_examples=800, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_record_gives_the_same_json_bytes(json_outputs, data: st.DataObject) -> None:
    """Odd values on any key: escapes, surrogates, huge and negative numbers, bools,
    None, bytes where a string belongs; the three ways agree, or fail alike."""
    ip2str, out = json_outputs[data.draw(st.integers(0, len(json_outputs) - 1))]
    base = data.draw(st.sampled_from(_recorded_records(ip2str)))
    rec = dict(base)
    keys = [name for _p, _r, name, others in out.fields for name in (name, *others)]
    for key in data.draw(st.lists(st.sampled_from(keys), max_size=6)):
        rec[key] = data.draw(VALUES)
    if data.draw(st.booleans()):
        rec["oob.time.sec"] = data.draw(st.integers(1, 2**31))
    compiled, generated, generic = _lines(out, rec)
    assert compiled == generic
    if None not in rec.values():  # (records never hold None; the generated way assumes it)
        assert generated == generic


# ------------------------------------------------------------------ NFLOG packets

NFLOG_FIX = Path(__file__).resolve().parent.parent / "fixtures" / "nflog"
PACKETS = [rec["data"][off:off + mlen] for rec in load_records(NFLOG_FIX)
           for off, mlen, mtype, *_ in nlsock.iter_messages(rec["data"])
           if mtype == nflog.MSG_PACKET]
BASE = {"raw.pktcount": 1, "raw.label": 0, "oob.mark": 0}


def _packet(decoder: nflog.NflogDecoder, buf: bytes):
    try:
        v = decoder.decode(buf, 0, None, BASE)
    except nflog.PartialMessage as exc:
        return ("partial", str(exc), list(exc.values.items()))
    except MalformedMessage as exc:
        return ("error", type(exc), str(exc))
    return None if v is None else list(v.items())


def test_the_compiled_packet_walker_is_the_one_nflog_uses() -> None:
    assert nflog.packet_walker() is not nflog._walk
    assert nflog.packet_walker(compiled=False) is nflog._walk
    assert nflog.NflogDecoder().attempts == 0


def test_recorded_packets_decode_alike() -> None:
    pure, learnt, fast = (nflog.NflogDecoder(learn=False, compiled=False),
                          nflog.NflogDecoder(compiled=False), nflog.NflogDecoder())
    for _ in range(2):  # the second time through the learnt shapes
        for m in PACKETS:
            want = _packet(pure, m)
            assert _packet(fast, m) == want  # the same keys in the same order
            # (a learnt shape fills in its own order: the same record, as a dict)
            assert dict(_packet(learnt, m)) == dict(want)
    assert len(PACKETS) > 20


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzzed_packets_decode_alike(data: st.DataObject) -> None:
    message = _mutations(data, data.draw(st.sampled_from(PACKETS)))
    assert _packet(nflog.NflogDecoder(), message) == \
        _packet(nflog.NflogDecoder(learn=False, compiled=False), message)


def test_random_damage_everywhere_decodes_packets_alike() -> None:
    rng = random.Random(1)
    fast, pure = nflog.NflogDecoder(), nflog.NflogDecoder(learn=False, compiled=False)
    for m in PACKETS:
        for _ in range(300):
            b = bytearray(m)
            for _ in range(rng.randint(1, 2)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            buf = bytes(b)
            assert _packet(fast, buf) == _packet(pure, buf)


def test_a_packet_table_the_walker_cannot_take_is_refused() -> None:
    with pytest.raises(ValueError):
        fastpath.compiled.FlatWalker({1: (0, ("x",), None, 2, "h")})  # signed
    with pytest.raises(ValueError):
        fastpath.compiled.FlatWalker({1: (7, ("x",), None, 0, "")})


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_keys_shared_between_fields_give_the_same_json_bytes(data: st.DataObject) -> None:
    """Field tables where a key belongs to two fields (the compiled line then looks
    keys up field by field) or to none, against the field-by-field way."""
    names = ["a", "b", "c.d", "e"]
    fields = tuple(
        (key_prefix(f"f{i}"), data.draw(st.sampled_from([str, json_string])),
         keys[0], tuple(keys[1:]))
        for i, keys in enumerate(data.draw(st.lists(
            st.lists(st.sampled_from(names), min_size=1, max_size=3), min_size=1, max_size=5))))
    record = {k: data.draw(st.one_of(st.none(), st.integers(), TEXT))
              for k in names + ["z"] if data.draw(st.booleans())}
    line = compiled_line([], None, key_prefix("dvc") + json_string("x"), fields)

    parts = [key_prefix("dvc") + json_string("x")]
    for prefix, render, name, others in fields:  # JSON._generic, written out
        value = record.get(name)
        for other in others:
            if record.get(other) is not None:
                value = record[other]
        if value is not None:
            try:
                parts.append(prefix + render(value))
            except Exception:  # noqa: BLE001 - the compiled line leaves these to it
                assert line(record, "") is None
                return
    want = "{" + ", ".join(parts) + "}\n"
    got = line(record, "")
    if got is None:  # only for text that is not UTF-8 (lone surrogates): generic decides
        assert any(isinstance(v, str) and any("\ud800" <= c <= "\udfff" for c in v)
                   for v in record.values())
    else:
        assert got == want


# ------------------------------------------------------------------ IP2STR

ADDRESS_KEYS = [name for name, _out in ip2str_module._PAIRS]
ADDRESSES = st.one_of(
    st.binary(min_size=4, max_size=4), st.binary(min_size=16, max_size=16),
    st.binary(max_size=20), st.none(), st.integers(0, 2**32), TEXT,
    st.binary(min_size=4, max_size=4).map(bytearray),
)


def _converted(ip2str, interp, record: dict) -> tuple:
    """(the record's items after `interp`, its result or error class, counters grown).
    IP2STR's memo is emptied first, so that each path converts by itself."""
    for texts in ip2str_module._TEXTS.values():
        texts.clear()
    before = ip2str.counters.snapshot()
    rec = dict(record)
    try:
        result: object = interp(rec)
    except Exception as exc:  # noqa: BLE001 - the class is what is compared
        result = type(exc)
    after = ip2str.counters.snapshot()
    grown = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    return list(rec.items()), result, grown


def test_the_compiled_address_text_is_the_one_ip2str_runs(json_outputs) -> None:
    ip2str = json_outputs[0][0]
    assert type(ip2str.interp) is fastpath.compiled.AddressText


def test_recorded_records_get_the_same_address_texts(json_outputs) -> None:
    ip2str = json_outputs[0][0]
    for m in MESSAGES:
        ev = conntrack.decode_ct(m)
        if ev is not None:
            rec = dict(ev.values)
            assert _converted(ip2str, ip2str.interp, rec) == \
                _converted(ip2str, ip2str.python_interp, rec)


def test_an_ip2str_with_its_compiled_twin_is_collected(tmp_path: Path) -> None:
    """The twin calls back into its plugin, which holds it: the collector must see the
    cycle (a daemon that rebuilds its stacks must not keep the old ones)."""
    import gc
    import weakref

    conf = tmp_path / "c.conf"
    conf.write_text("[global]\nstack=ct1:NFCT,ip2str1:IP2STR,json1:JSON\n[ct1]\n"
                    f'[json1]\nfile="{tmp_path}/o.json"\n')
    pipeline = build_pipeline(load_config(str(conf)))
    ip2str = pipeline.stacks[0].filters[0]
    assert type(ip2str.interp) is fastpath.compiled.AddressText
    gone = weakref.ref(ip2str)
    del pipeline, ip2str
    gc.collect()
    assert gone() is None


@settings(max_examples=1500, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_record_gets_the_same_address_texts(json_outputs, data: st.DataObject) -> None:
    """Any family (bridged with any ethertype, unknown, absent, not an int), any address
    value (either size, the wrong size, not bytes): the same keys in the same order, the
    same result or error, the same counters."""
    ip2str = json_outputs[0][0]
    rec: dict = {}
    family = data.draw(st.one_of(st.sampled_from([2, 10, 7, 0, 3]), st.none(), st.booleans(),
                                 st.just("2")))
    if family is not None:
        rec["oob.family"] = family
    if data.draw(st.booleans()):
        rec["oob.protocol"] = data.draw(st.sampled_from([0x0800, 0x0806, 0x86DD, 0, 1]))
    for key in data.draw(st.lists(st.sampled_from(ADDRESS_KEYS), max_size=8)):
        rec[key] = data.draw(ADDRESSES)
    assert _converted(ip2str, ip2str.interp, rec) == \
        _converted(ip2str, ip2str.python_interp, rec)


def test_recv_batch_reads_like_recv() -> None:
    """Datagrams of a real socket, each at its own size, up to the count asked for, and
    the errno that stopped it (EAGAIN: nothing more; EBADF on a closed socket)."""
    import errno
    import socket

    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sent = [bytes([i]) * (i * 7 % 300 + 1) for i in range(40)]
        for d in sent:
            a.send(d)
        buf = bytearray(65536)
        got, err = fastpath.compiled.recv_batch(b.fileno(), buf, 25)
        assert got == sent[:25] and err == 0
        got, err = fastpath.compiled.recv_batch(b.fileno(), buf, 25)
        assert got == sent[25:] and err == errno.EAGAIN
        small = bytearray(3)  # a datagram longer than the buffer is cut, as recv cuts it
        a.send(b"abcdef")
        assert fastpath.compiled.recv_batch(b.fileno(), small, 5) == ([b"abc"], errno.EAGAIN)
    finally:
        a.close()
        fd = b.fileno()
        b.close()
    assert fastpath.compiled.recv_batch(fd, bytearray(8), 1) == ([], errno.EBADF)


def test_packet_json_lines_with_the_packet_time_match_the_generic_way(tmp_path: Path) -> None:
    """The NFLOG JSON stack renders with `_render_stamped` (the packet's time written
    out): the same bytes as field by field, with the usec, without it, and with no
    packet time at all (then the time of rendering, in both ways within one second)."""
    conf = tmp_path / "p.conf"
    conf.write_text("[global]\nstack=lg1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2s1:IP2STR,"
                    f'hw1:HWHDR,json1:JSON\n[lg1]\ngroup=10\n[json1]\nfile="{tmp_path}/p.json"\n')
    stack = build_pipeline(load_config(str(conf))).stacks[0]
    out = stack.output
    assert out.render == out._render_stamped and out._line is not None
    records = []
    for packet in PACKETS:
        rec = nflog.decode_packet(packet, 0, len(packet), {"oob.mark": 0})
        if rec is None:
            continue
        rec.setdefault("oob.time.sec", 1795729219)  # as the input gives it
        rec.setdefault("oob.time.usec", len(records) * 37)
        for filt in stack.filters:
            filt.interp(rec)
        records.append(rec)
    assert len(records) > 10
    for rec in records:
        no_usec = {k: v for k, v in rec.items() if k != "oob.time.usec"}
        no_time = {k: v for k, v in no_usec.items() if k != "oob.time.sec"}
        for variant in (rec, no_usec, no_time):
            pairs = [(out.render(variant), out._generic(variant)) for _ in range(2)]
            assert any(a == b for a, b in pairs)  # (no_time: a second may turn between)
            assert pairs[0][0].startswith("{") and pairs[0][0].endswith("}\n")
        assert f'.{rec["oob.time.usec"]:06d}' in out.render(rec)
        assert f'.{rec["oob.time.usec"]:06d}' not in out.render(no_usec)
