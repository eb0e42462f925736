"""IPFIX output: message packing, template refresh and the extended templates, over a
real UDP socket read back by the test (the live tests compare with ulogd and nfcapd).

The templates are read back from the template set the messages carry, and each data
record is decoded with them, so these checks do not trust the encoder's own tables.
"""

from __future__ import annotations

import socket
import struct

import pytest

from tests.outputs import Delivered
from ulogpy.config.model import options_model
from ulogpy.core.registry import registry


def decode(message: bytes, known: dict[int, list[tuple[int, int]]]) -> dict:
    """Header, templates (learnt into `known`) and records as {IE number: value}."""
    version, length, _export, seq, domain = struct.unpack_from("!HHIII", message)
    assert version == 10 and length == len(message)
    records, i = [], 16
    while i < length:
        set_id, set_len = struct.unpack_from("!HH", message, i)
        j, end = i + 4, i + set_len
        if set_id == 2:
            while j < end:
                tid, count = struct.unpack_from("!HH", message, j)
                known[tid] = [struct.unpack_from("!HH", message, j + 4 + 4 * k)
                              for k in range(count)]
                j += 4 + 4 * count
        else:
            fields = known[set_id]
            size = sum(n for _ie, n in fields)
            while j + size <= end:
                rec = {}
                for ie, n in fields:
                    raw = message[j:j + n]
                    rec[ie] = raw if n == 16 or ie in (8, 12, 225) else int.from_bytes(raw)
                    j += n
                records.append((set_id, rec))
            assert j == end
        i = end
    return {"seq": seq, "domain": domain, "records": records}


@pytest.fixture
def collector():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(5)
    yield s
    s.close()


def run(collector: socket.socket, records: list[dict], **opts) -> list[bytes]:
    cls = registry()["IPFIX"]
    out = cls("i1", options_model(cls)(oid=5, host="127.0.0.1",
                                       port=collector.getsockname()[1], proto="udp", **opts))
    out.configure()
    d = Delivered(out)
    d.start()
    for r in records:
        d.write(r)
    d.flush()
    got: list[bytes] = []
    try:
        while len(got) < 1000:
            got.append(collector.recv(65535))
            collector.settimeout(0.5)
    except TimeoutError:
        pass
    d.stop()
    return got


def v4(sport: int, **more) -> dict:
    return {"orig.ip.saddr": bytes([10, 0, 0, 1]), "orig.ip.daddr": bytes([10, 0, 0, 2]),
            "orig.raw.pktcount": 3, "orig.raw.pktlen": 2**32, "reply.raw.pktcount": 2,
            "reply.raw.pktlen": 5, "flow.start.sec": 100, "flow.start.usec": 123456,
            "flow.end.sec": 200, "flow.end.usec": 999, "orig.l4.sport": sport,
            "orig.l4.dport": 53, "orig.ip.protocol": 17, "ct.mark": 42, "oob.family": 2,
            **more}


def test_compatible_messages_fit_the_mtu_and_number_records_as_rfc_7011(collector) -> None:
    msgs = run(collector, [v4(p) for p in range(1000, 1040)], mtu=300)
    known: dict = {}
    decoded = [decode(m, known) for m in msgs]
    assert all(len(m) <= 300 for m in msgs)
    assert [t for t, _ in decoded[0]["records"]] and known == {256: [
        (8, 4), (12, 4), (86, 4), (85, 4), (150, 4), (151, 4), (7, 2), (11, 2), (4, 1),
        (95, 4)]}
    seq = 0
    ports = []
    for m in decoded:
        assert m["domain"] == 5 and m["seq"] == seq
        seq += len(m["records"])
        ports += [r[7] for _t, r in m["records"]]
    assert ports == list(range(1000, 1040))
    first = decoded[0]["records"][0][1]
    # 32-bit totals as ulogd sends them: orig + reply, cut to 32 bits
    assert first[86] == 5 and first[85] == 5 and first[150] == 100 and first[95] == 42


def test_ipv6_flows_are_counted_not_sent_in_compatible_mode(collector) -> None:
    six = v4(7, **{"orig.ip.saddr": bytes(15) + b"\1", "orig.ip.daddr": bytes(15) + b"\2",
                   "oob.family": 10})
    cls = registry()["IPFIX"]
    out = cls("i1", options_model(cls)(oid=5, host="127.0.0.1",
                                       port=collector.getsockname()[1], proto="udp"))
    out.configure()
    d = Delivered(out)
    d.start()
    for r in (v4(1), six, v4(2)):
        d.write(r)
    d.flush()
    known: dict = {}
    got = decode(collector.recv(65535), known)
    d.stop()
    assert [r[7] for _t, r in got["records"]] == [1, 2]
    assert out.counters.get("ipv6_skipped") == 1 and out.counters.get("rejected") == 1
    assert out.counters.get("written") == 2


def test_extended_templates_carry_ipv6_64_bit_counters_millis_and_nat(collector) -> None:
    nat4 = v4(4000, **{"reply.ip.daddr": bytes([192, 0, 2, 1]), "reply.l4.dport": 61000,
                       "ct.event": 4})
    plain4 = v4(53, **{"reply.ip.daddr": bytes([10, 0, 0, 1]), "reply.l4.dport": 53,
                       "ct.event": 4})
    six = v4(5000, **{"orig.ip.saddr": b"\xfd" + bytes(14) + b"\1",
                      "orig.ip.daddr": b"\xfd" + bytes(14) + b"\2",
                      "reply.ip.daddr": b"\xfd" + bytes(14) + b"\x09",
                      "reply.l4.dport": 62000, "oob.family": 10})
    msgs = run(collector, [nat4, six, plain4], extended=1)
    known: dict = {}
    records = [r for m in msgs for r in decode(m, known)["records"]]
    assert sorted(known) == [257, 258]
    assert [t for t, _ in records] == [257, 258, 257]
    a, b, c = (r for _t, r in records)
    assert a[225] == bytes([192, 0, 2, 1]) and a[227] == 61000 and a[230] == 2  # NAT44 delete
    assert c[230] == 0 and c[225] == bytes([10, 0, 0, 1])  # no translation
    assert a[86] == 5 and a[85] == 2**32 + 5  # 64-bit totals
    assert a[152] == 100_123 and a[153] == 200_000  # milliseconds
    assert b[27] == six["orig.ip.saddr"] and b[281] == six["reply.ip.daddr"]
    assert b[227] == 62000 and 230 not in b
    assert a[323] > 1_700_000_000_000  # observationTimeMilliseconds: the export time


def test_udp_template_refresh(collector) -> None:
    """send_template=once over UDP: the template again once template_refresh is over."""
    clock = [1000.0]
    cls = registry()["IPFIX"]
    out = cls("i1", options_model(cls)(oid=5, host="127.0.0.1", template_refresh=60,
                                       port=collector.getsockname()[1], proto="udp"))
    out.configure()
    t = out.transport
    t.clock = lambda: clock[0]
    t.open()
    with_template = []
    for step in (0, 10, 59, 61, 62, 200):
        clock[0] = 1000.0 + step
        t.write([v4(step)])
        with_template.append(b"\x00\x02" in collector.recv(65535)[16:18])
    t.close()
    assert with_template == [True, False, False, True, False, True]
