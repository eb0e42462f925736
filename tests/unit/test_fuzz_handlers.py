"""A million damaged kernel messages through NFCT's and NFLOG's handlers, full stacks attached.

Why: an exception out of an input's handler used to end the daemon, and the
fuzzing of recorded conntrack messages found one (a NEW whose CTA_TIMESTAMP
start did not fit the packed 32-bit seconds).  The guard (`ulogpy.daemon.guard`)
now keeps the daemon alive whatever happens, so what this test asks is more:
that nothing needs the guard (`failed` stays 0 on every instance, inputs,
filters and outputs alike), and that the loss counters stay plausible (NFLOG
never counts more lost packets for one message than `PLAUSIBLE_LOSS`).

The messages are the ones recorded from the kernel (tests/fixtures/conntrack,
tests/fixtures/nflog), damaged cheaply with a seeded `random.Random`: bit flips,
byte changes, truncations, extensions, corrupted nlmsg_len and attribute lengths
and types, corrupted sequence numbers, ids and time stamps, and datagrams of
several messages with one damaged among them.  The stacks are built from a
configuration text by the stack builder and attached by the runner, as the
daemon does; the inputs open no socket: their `receive` is fed by hand.
"""

from __future__ import annotations

import logging
import random
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from ulogpy.plugins.input.nflog import PLAUSIBLE_LOSS

from tests.fixtures.recorded import load_records
from ulogpy.config.load import load_config
from ulogpy.core.stack import Pipeline, build_pipeline
from ulogpy.daemon.guard import guard_input
from ulogpy.daemon.loop import Loop
from ulogpy.daemon.runner import attach
from ulogpy.netlink import attrs, conntrack, nflog, nlsock

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
#: Damaged messages per input instance: 10**6 in all (NFCT's are the cheaper ones).
PER_INPUT = {"cth": 300_000, "cte": 300_000, "lg1": 200_000, "lg2": 200_000}
#: Messages handled between two hand-overs to the writers (a read batch of the daemon).
BATCH = 256
SEED = 0x5EED_0011

CONFIG = """\
[global]
stack=cth:NFCT,ip2s1:IP2STR,json1:JSON
stack=cte:NFCT,ip2s2:IP2STR,flow1:PRINTFLOW,emu1:LOGEMU
stack=lg1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2s3:IP2STR,hw1:HWHDR,json2:JSON
stack=lg2:NFLOG,base2:BASE,ifi2:IFINDEX,ip2s4:IP2STR,pkt1:PRINTPKT,emu2:LOGEMU
[cth]
hash_max_entries=512
accept_src_filter=10.0.0.0/8,fd00::/8
[cte]
hash_enable=0
[lg1]
group=10
[lg2]
group=11
seq_local=1
[json1]
file="{d}/ct.json"
[emu1]
file="{d}/ct.log"
[json2]
file="{d}/pkt.json"
[emu2]
file="{d}/pkt.log"
"""


@dataclass(frozen=True)
class Sample:
    """One recorded message and where its damage may go."""

    data: bytes
    #: Offsets of every attribute header (nested ones included).
    attr_heads: tuple[int, ...]
    #: (offset, size) of number payloads worth corrupting: sequence numbers, ct.id,
    #: time stamps.
    numbers: tuple[tuple[int, int], ...]
    #: Offset of the NFULA_SEQ payload (NFLOG), renumbered to follow on before damage.
    seq_at: int | None = None


def _attr_heads(msg: bytes, start: int, end: int, out: list[int], depth: int = 0) -> None:
    try:
        for _atype, flags, pstart, pend in attrs.iter_attrs(msg, start, end):
            out.append(pstart - attrs.NLA_HDRLEN)
            if flags & attrs.NLA_F_NESTED and depth < 3:
                _attr_heads(msg, pstart, pend, out, depth + 1)
    except attrs.MalformedMessage:
        pass


#: Number attributes worth corrupting, by payload size: (top-level sizes, nested sizes).
_CT_NUMBERS = ({conntrack.CTA_ID: 4, conntrack.CTA_MARK: 4},
               {conntrack.CTA_TIMESTAMP: {conntrack.CTA_TIMESTAMP_START: 8,
                                          conntrack.CTA_TIMESTAMP_STOP: 8}})
_LOG_NUMBERS = ({nflog.NFULA_SEQ: 4, nflog.NFULA_SEQ_GLOBAL: 4, nflog.NFULA_TIMESTAMP: 16}, {})


def _numbers(msg: bytes, kinds: dict[int, int], nested: dict[int, dict[int, int]]
             ) -> tuple[list[tuple[int, int]], int | None]:
    """(offset, size) of the number payloads of `msg`, and where its NFULA_SEQ is."""
    out = []
    seq_at = None
    for atype, _flags, pstart, pend in attrs.iter_attrs(msg, 20, len(msg)):
        if kinds.get(atype) == pend - pstart:
            out.append((pstart, pend - pstart))
            if kinds is _LOG_NUMBERS[0] and atype == nflog.NFULA_SEQ:
                seq_at = pstart
        for sub, _f, sstart, send in (attrs.iter_attrs(msg, pstart, pend)
                                      if atype in nested else ()):
            if nested[atype].get(sub) == send - sstart:
                out.append((sstart, send - sstart))
    return out, seq_at


def samples(kind: str) -> list[Sample]:
    """Every recorded message of `kind` (conntrack or nflog), alone."""
    kinds, nested = _CT_NUMBERS if kind == "conntrack" else _LOG_NUMBERS
    out = []
    for rec in load_records(FIXTURES / kind):
        if not rec.get("data"):
            continue  # an ENOBUFS the recorder noted
        for off, mlen, *_ in nlsock.iter_messages(rec["data"]):
            msg = rec["data"][off:off + mlen]
            heads: list[int] = []
            _attr_heads(msg, 20, len(msg), heads)
            numbers, seq_at = _numbers(msg, kinds, nested)
            out.append(Sample(msg, tuple(heads), tuple(numbers), seq_at))
    return out


def _set_len(buf: bytearray) -> None:
    if len(buf) >= 4:
        struct.pack_into("=I", buf, 0, len(buf))


class Mutator:
    """Damages a recorded message in one of a dozen ways, cheaply (about 3 µs).

    Random numbers come from `getrandbits` modulo n, a fraction of the cost of
    `choice` or `randrange` (the bias does not matter to a fuzzer)."""

    def __init__(self, rng: random.Random, corpus: list[Sample],
                 next_seq: Callable[[], int] | None = None) -> None:
        self.bits = rng.getrandbits
        self.rng = rng
        self.corpus = corpus
        #: NFLOG's next expected number: the sound messages follow on, so that every
        #: gap the input sees comes from the damage.
        self.next_seq = next_seq
        self.ops: tuple[Callable[[bytearray, Sample], None], ...] = (
            self.flip_bits, self.flip_bits, self.change_bytes, self.truncate, self.extend,
            self.nlmsg_len, self.attr_len, self.attr_len, self.attr_type, self.number,
            self.number, self.swap_slices,
        )

    def below(self, n: int) -> int:
        return self.bits(32) % n

    def message(self) -> tuple[bytes, int]:
        """A damaged datagram and how many messages it holds."""
        roll = self.bits(8)
        spliced = roll < 26  # one in ten: among sound messages of one datagram, as batched
        seq = self.next_seq() if self.next_seq is not None else 0
        corpus = self.corpus
        sample = corpus[self.below(len(corpus))]
        buf = bytearray(sample.data)
        if sample.seq_at is not None:
            struct.pack_into("!I", buf, sample.seq_at, (seq + spliced) & 0xFFFFFFFF)
        ops = self.ops
        for _ in range(1 + (roll & 0x30 == 0) + (roll & 0xC0 == 0)):  # 1, 2 or 3 of them
            if buf:
                ops[self.below(len(ops))](buf, sample)
        if spliced:
            return (self.sound(seq) + bytes(buf) + bytes(-len(buf) % 4) + self.sound(seq + 2),
                    3)
        return bytes(buf), 1

    def sound(self, seq: int) -> bytes:
        """A recorded message as it was (numbered `seq`), padded."""
        sample = self.corpus[self.below(len(self.corpus))]
        data = sample.data + bytes(-len(sample.data) % 4)
        if sample.seq_at is None:
            return data
        buf = bytearray(data)
        struct.pack_into("!I", buf, sample.seq_at, seq & 0xFFFFFFFF)
        return bytes(buf)

    def flip_bits(self, buf: bytearray, sample: Sample) -> None:
        for _ in range(1 + self.bits(1)):
            buf[self.below(len(buf))] ^= 1 << self.bits(3)

    def change_bytes(self, buf: bytearray, sample: Sample) -> None:
        i = self.below(len(buf))
        n = min(1 + self.bits(2), len(buf) - i)
        buf[i:i + n] = self.rng.randbytes(n)

    def truncate(self, buf: bytearray, sample: Sample) -> None:
        del buf[self.below(len(buf)):]
        if self.bits(1):
            _set_len(buf)

    def extend(self, buf: bytearray, sample: Sample) -> None:
        buf += self.rng.randbytes(1 + self.bits(6))
        if self.bits(1):
            _set_len(buf)

    def nlmsg_len(self, buf: bytearray, sample: Sample) -> None:
        n = len(buf)
        if n < 4:
            return
        values = (0, 1, 15, 16, 19, 20, 21, n - 4, n - 1, n + 1, n + 4, self.bits(32))
        struct.pack_into("=I", buf, 0, values[self.below(len(values))] & 0xFFFFFFFF)

    def attr_len(self, buf: bytearray, sample: Sample) -> None:
        heads = sample.attr_heads
        if not heads:
            return
        at = heads[self.below(len(heads))]
        if at + 2 > len(buf):
            return
        (now,) = struct.unpack_from("=H", buf, at)
        values = (0, 1, 2, 3, 4, 5, 7, 8, now - 4, now - 1, now + 1, now + 4, now * 2,
                  self.bits(16))
        struct.pack_into("=H", buf, at, values[self.below(len(values))] & 0xFFFF)

    def attr_type(self, buf: bytearray, sample: Sample) -> None:
        heads = sample.attr_heads
        if heads:
            at = heads[self.below(len(heads))]
            if at + 4 <= len(buf):
                struct.pack_into("=H", buf, at + 2, self.bits(16))

    def number(self, buf: bytearray, sample: Sample) -> None:
        """A sequence number, id, mark or time stamp set to anything."""
        numbers = sample.numbers
        if not numbers:
            self.change_bytes(buf, sample)
            return
        offset, size = numbers[self.below(len(numbers))]
        if offset + size > len(buf):
            return
        kind = self.bits(2)
        buf[offset:offset + size] = b"\xff" * size if kind == 0 else b"\x00" * size \
            if kind == 1 else self.rng.randbytes(size)

    def swap_slices(self, buf: bytearray, sample: Sample) -> None:
        if len(buf) < 24:
            return
        a = 20 + self.below(len(buf) - 20)
        b = 20 + self.below(len(buf) - 20)
        a, b = min(a, b), max(a, b)
        buf[a:b] = buf[a:b][::-1]


def damaged_dump(mutator: Mutator, count: int) -> list[conntrack.CtEvent]:
    """What a table dump would give if its messages were damaged like the events."""
    out = []
    for _ in range(count):
        data, _n = mutator.message()
        try:
            event = conntrack.decode_ct(data, 0, struct.unpack_from("=I", data)[0])
        except (attrs.MalformedMessage, struct.error):
            continue
        if event is not None:
            out.append(event)
    return out


def resync_from_damaged_dump(inp, mutator: Mutator) -> None:
    """The flow state after a dump of damaged messages: what a resync (event mode) or a
    poll (hash mode) emits goes through the stack, and the state is then the dump's."""
    dumped = damaged_dump(mutator, 20_000)
    seen = {event.tuple_key for event in dumped}
    if inp.live is not None:
        for record in inp.live.resync(dumped):
            inp.emit(record)
        assert set(inp.live.alive) == seen
    else:
        for record in inp.table.vanished(seen):
            inp.emit(record)
        assert all(key in seen for key in inp.table.flows)


def build(tmp_path: Path) -> tuple[Pipeline, Loop, object]:
    """The pipeline of `CONFIG`, outputs started and attached as the daemon does."""
    path = tmp_path / "fuzz.conf"
    path.write_text(CONFIG.format(d=tmp_path))
    pipeline = build_pipeline(load_config(str(path)))
    loop = Loop()
    runner = attach(pipeline, loop)
    for inst in pipeline.instances():
        if inst not in pipeline.inputs:
            inst.start(loop)
            runner.open(inst)
    runner.start()
    return pipeline, loop, runner


@pytest.fixture
def fresh_shapes():
    """The decoders' learnt shapes are process-wide: what the damage taught them goes."""
    yield
    conntrack.reset_shapes()
    nflog.reset_shapes()


@pytest.mark.parametrize("seed", [SEED])
def test_a_million_damaged_messages(tmp_path: Path, seed: int, caplog, fresh_shapes) -> None:
    pipeline, loop, runner = build(tmp_path)
    inputs = {inp.id: inp for inp in pipeline.inputs}
    corpora = {"conntrack": samples("conntrack"), "nflog": samples("nflog")}
    assert len(corpora["conntrack"]) > 90 and len(corpora["nflog"]) > 30
    rng = random.Random(seed)
    worst_loss = 0
    handled = 0
    started = time.perf_counter()
    caplog.set_level(logging.ERROR, logger="ulogpy.guard")
    for inp_id, kind in (("cth", "conntrack"), ("cte", "conntrack"), ("lg1", "nflog"),
                         ("lg2", "nflog")):
        inp = inputs[inp_id]
        guard_input(inp)  # the runner's already: this keeps one wrapper
        receive = inp.receive
        next_seq = (lambda inp=inp: inp.next_seq) if kind == "nflog" else None
        mutator = Mutator(rng, corpora[kind], next_seq)
        message = mutator.message
        counters = inp.counters
        lost = counters.get("lost")
        for i in range(PER_INPUT[inp_id]):
            data, count = message()
            receive(data)
            if kind == "nflog":
                now = counters.get("lost")
                worst_loss = max(worst_loss, now - lost)
                assert now - lost <= PLAUSIBLE_LOSS * count, (inp_id, data.hex())
                lost = now
            if i % BATCH == 0:
                runner.after_batch()
        handled += PER_INPUT[inp_id]
        if kind == "conntrack":
            resync_from_damaged_dump(inp, mutator)
    runner.after_batch()
    elapsed = time.perf_counter() - started
    stalled = runner.shutdown()
    for inst in pipeline.instances():
        if inst not in pipeline.inputs:
            inst.stop()
    loop.close()

    report = {str(inst): inst.counters.snapshot() for inst in pipeline.instances()}
    print(f"\n{handled} damaged messages in {elapsed:.1f} s "
          f"({elapsed / handled * 1e6:.1f} µs each); worst NFLOG loss of one datagram: "
          f"{worst_loss}")
    for name, counts in report.items():
        print(f"  {name}: {counts}")
    assert handled >= 10**6 and not stalled
    failures = {name: c["failed"] for name, c in report.items() if c.get("failed")}
    assert not failures, (failures, [r.getMessage() for r in caplog.records][:5])
    # Something went through every stack to its output: this is not a test of rejects.
    assert all(c.get("written", 0) > 1000 for name, c in report.items()
               if name.split(":")[1] in ("JSON", "LOGEMU")), report
    assert len(inputs["cth"].table) <= 512
    print(f"  flows kept: hash {len(inputs['cth'].table)}, live {len(inputs['cte'].live)}")
