"""nfnetlink_log codec and NFLOG plugin, on messages recorded from the kernel.

The fixtures come from scripts/record_nflog_fixtures.py; expectations come
from what that script did (manifest.json: interfaces, addresses, ports,
payload sizes, prefixes, marks, users, the flood it sent), from the packet
bytes themselves (IP headers), and from ulogd's rules (spec 4.1).
"""

from __future__ import annotations

import errno
import ipaddress
import json
import socket
import struct
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.fixtures.recorded import load_manifest, load_records
from ulogpy.netlink import attrs, nflog, nlsock
from ulogpy.netlink.attrs import MalformedMessage
from ulogpy.netlink.nflog import PartialMessage, decode_packet
from ulogpy.netlink.shapes import MAX_SHAPES

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "nflog"
BASE = {"raw.pktcount": 1, "raw.label": 0, "oob.mark": 0}
ARPHRD = {"ether": 1, "loopback": 772}


# ---------------------------------------------------------------------------- loading


@cache
def manifest() -> dict:
    return load_manifest(FIX)


@cache
def records() -> list[dict]:
    return load_records(FIX)


@cache
def messages() -> list[tuple[dict, int, int, int]]:
    """(record, offset, length, nlmsg type) of every message in every datagram."""
    return [(rec, off, mlen, mtype) for rec in records() if rec["kind"] == "data"
            for off, mlen, mtype, *_ in nlsock.iter_messages(rec["data"])]


#: The pure-Python loop, neither compiled nor learnt shapes.
GENERIC = nflog.NflogDecoder(learn=False, compiled=False)


def generic(buf: bytes, offset: int = 0, length: int | None = None) -> dict | None | str:
    """Decode with the generic loop only (a decoder that learns no shapes), or say how it failed."""
    return outcome(buf, offset, length, GENERIC.decode)


def outcome(buf: bytes, offset: int = 0, length: int | None = None,
            decode=decode_packet) -> dict | None | str:
    try:
        return decode(buf, offset, length, BASE)
    except PartialMessage as exc:
        return ("partial", exc.values)  # type: ignore[return-value]
    except MalformedMessage:
        return "malformed"


@cache
def packets() -> list[tuple[dict, dict]]:
    """(record, decoded values) of every packet message, decoded by the generic loop."""
    out = []
    for rec, off, mlen, mtype in messages():
        if mtype == nflog.MSG_PACKET:
            values = generic(rec["data"], off, mlen)
            assert isinstance(values, dict), values
            out.append((rec, values))
    return out


def iface(ref: str) -> dict:
    ns, dev = ref.split(":")
    return manifest()["interfaces"][ns][dev]


def mac(ref: str) -> bytes:
    return bytes.fromhex(iface(ref)["mac"].replace(":", ""))


def ip_of(pkt: bytes) -> tuple[int, bytes, bytes, int, bytes]:
    """(version, source, destination, protocol, layer-4 bytes) of an IPv4/IPv6 packet."""
    if pkt[0] >> 4 == 4:
        ihl = (pkt[0] & 15) * 4
        return 4, pkt[12:16], pkt[16:20], pkt[9], pkt[ihl:]
    return 6, pkt[8:24], pkt[24:40], pkt[6], pkt[40:]


def logged(p: dict) -> list[dict]:
    """The decoded messages of packet `p` of the manifest (matched by group, prefix, IP)."""
    src = ipaddress.ip_address(p["src"]).packed
    dst = ipaddress.ip_address(p["dst"]).packed
    out = []
    for rec, v in packets():
        if rec["group"] != p["group"] or v.get("oob.prefix") != p["prefix"]:
            continue
        _ver, s, d, _proto, _l4 = ip_of(v["raw.pkt"])
        if (s, d) == (src, dst):
            out.append(v)
    return out


# ---------------------------------------------------------------------------- recorded packets


def test_fixture_sanity() -> None:
    m = manifest()
    assert m["recorded_by"] == "scripts/record_nflog_fixtures.py"
    groups = {rec["group"] for rec in records()}
    assert groups == {10, 11, 12, 13}
    assert any(rec["kind"] == "enobufs" for rec in records())
    assert len(packets()) >= len(m["packets"])


@pytest.mark.parametrize("name", [p["name"] for p in json.loads(
    (FIX / "manifest.json").read_text())["packets"]])
def test_packet_matches_what_the_recorder_sent(name: str) -> None:
    p = next(p for p in manifest()["packets"] if p["name"] == name)
    found = logged(p)
    assert len(found) == p.get("count", 1)
    for v in found:
        assert v["oob.family"] == p["family"]
        assert v["oob.protocol"] == p["proto"]
        assert v["oob.hook"] == p["hook"]
        assert v["oob.mark"] == p["mark"]
        assert v["raw.pktcount"] == 1
        # Interfaces: only those the packet had (ulogd: only if > 0).
        for key, ref in (("oob.ifindex_in", "indev"), ("oob.ifindex_out", "outdev"),
                         (nflog.PHYSINDEV, "physindev")):
            if ref in p:
                assert v[key] == iface(p[ref])["ifindex"], key
            else:
                assert key not in v, key
        # The packet itself, copied whole unless the rule had a snaplen.
        ver, _s, _d, proto, l4 = ip_of(v["raw.pkt"])
        assert ver == (6 if p["family"] == 10 or ":" in p["src"] else 4)
        l4_len = p["payload"] + (8 if "dport" in p else 0)
        full = (40 if ver == 6 else 20) + l4_len
        assert v["raw.pktlen"] == len(v["raw.pkt"]) == min(full, p.get("snaplen", full))
        if "dport" in p:
            assert proto == 17
            assert struct.unpack("!H", l4[2:4])[0] == p["dport"]
        else:
            assert proto == (58 if ver == 6 else 1)
            assert struct.unpack("!H", l4[4:6])[0] == p["icmp_id"]
        # Link-layer header and source address: only on the way in.
        if "hw_from" in p:
            src_mac, dst_mac = mac(p["hw_from"]), mac(p["hw_to"])
            assert v["raw.mac.saddr"] == src_mac
            assert v["raw.mac.addrlen"] == 6
            assert v["raw.mac_len"] == 14
            assert v["raw.mac"] == dst_mac + src_mac + struct.pack("!H", p["proto"])
            assert v["raw.type"] == ARPHRD[iface(p["hw_to"])["type"]]
        else:
            for key in ("raw.mac", "raw.mac_len", "raw.type", "raw.mac.saddr",
                        "raw.mac.addrlen"):
                assert key not in v, key
        # Socket owner: only for locally generated packets.
        if "uid" in p:
            assert (v["oob.uid"], v["oob.gid"]) == (p["uid"], p["gid"])
        else:
            assert "oob.uid" not in v and "oob.gid" not in v


def test_kernel_timestamps_only_on_received_packets() -> None:
    for rec, v in packets():
        hook = v["oob.hook"]
        if hook == 3:  # locally generated: no kernel time stamp, ulogd uses its clock
            assert "oob.time.sec" not in v and "oob.time.usec" not in v
            continue
        stamp_ns = v["oob.time.sec"] * 10**9 + v["oob.time.usec"] * 1000
        # Stamped on arrival, read after; the kernel may hold a batch for its timeout.
        assert 0 <= rec["recv_ns"] - stamp_ns < 2 * 10**9
        assert 0 <= v["oob.time.usec"] < 10**6


def test_bridge_family_extras_are_kept_under_private_names() -> None:
    (v,) = logged(next(p for p in manifest()["packets"] if p["name"] == "br4"))
    assert v["oob.family"] == socket.AF_BRIDGE
    # The bridge hook also reports the whole L2 header; ulogd does not export it.
    assert v[nflog.L2HDR] == v["raw.mac"]
    from ulogpy.plugins.input.nflog import NFLOG

    assert not any(key.name.startswith("nflog.") for key in NFLOG.output_keys)


def test_sequence_numbers_per_group() -> None:
    seqs: dict[int, list[int]] = {}
    for rec, v in packets():
        seqs.setdefault(rec["group"], []).append(v["oob.seq.local"])
        # Global numbers only where asked for (group 11).
        assert ("oob.seq.global" in v) == (rec["group"] == 11)
    for group in (10, 11, 12):
        assert seqs[group] == list(range(len(seqs[group]))), group
    flood = manifest()["flood"]
    s13 = seqs[13]
    assert s13[0] == 0 and s13[-1] == flood["packets"] + flood["tail"] - 1
    assert len(s13) < flood["packets"]  # the overrun really lost packets


def test_batches_hold_several_messages_and_end_with_done() -> None:
    group11 = [rec for rec in records() if rec["group"] == 11]
    spec = manifest()["groups"]["11"]
    for rec in group11:
        types = [mtype for _off, _len, mtype, *_ in nlsock.iter_messages(rec["data"])]
        assert types[-1] == nlsock.NLMSG_DONE
        assert set(types[:-1]) == {nflog.MSG_PACKET}
        assert len(types) - 1 <= spec["qthresh"]
    assert sum(len(list(nlsock.iter_messages(r["data"]))) - 1 for r in group11) == 5
    # NLMSG_DONE is no packet.
    rec, off, mlen, _ = next(m for m in messages() if m[3] == nlsock.NLMSG_DONE)
    assert decode_packet(rec["data"], off, mlen) is None


def test_conntrack_flag_refused_or_ct_attached() -> None:
    spec = manifest()["groups"]["11"]
    ct_values = [v.get("ct") for rec, v in packets() if rec["group"] == 11]
    if "flags_refused" in spec:
        assert spec["flags_refused"]["errno"] == errno.EOPNOTSUPP
        assert ct_values == [None] * len(ct_values)
    else:
        assert all(ct_values)


def test_group_owner_from_proc() -> None:
    proc = manifest()["proc_nfnetlink_log_r"]
    path = FIX / "proc.tmp"
    path.write_text(proc)
    try:
        for group, spec in manifest()["groups"].items():
            if spec["ns"] == "r":
                assert nflog.group_portid(int(group), path) == spec["portid"]
        assert nflog.group_portid(12, path) is None  # group 12 lived in the other netns
    finally:
        path.unlink()
    assert nflog.group_portid(5, FIX / "missing") is None


def test_proc_shows_the_mode_and_timeout_the_builders_asked_for() -> None:
    rows = {int(line.split()[0]): line.split()
            for line in manifest()["proc_nfnetlink_log_r"].splitlines()}
    for group, row in rows.items():
        copy_mode, copy_range, timeout = int(row[3]), int(row[4]), int(row[5])
        assert copy_mode == nflog.NFULNL_COPY_PACKET
        assert copy_range == 0xFFFF - 4  # ulogd's 0xffff, clamped by the kernel
        assert timeout == manifest()["groups"][str(group)].get("timeout", 100)


# ---------------------------------------------------------------------------- builders


def parse_request(msg: bytes) -> tuple[tuple, tuple, dict[int, bytes]]:
    hdr = nlsock.NLMSGHDR.unpack_from(msg)
    assert hdr[0] == len(msg)
    gen = nflog.NFGENMSG.unpack_from(msg, 16)
    found = {t: msg[a:b] for t, _f, a, b in attrs.iter_attrs(msg, 20, len(msg))}
    return hdr, gen, found


def test_config_builders() -> None:
    hdr, gen, found = parse_request(nflog.build_bind(77, 513))
    assert hdr[1] == (4 << 8) | 1 and hdr[2] == nlsock.NLM_F_REQUEST | nlsock.NLM_F_ACK
    assert hdr[3] == 77
    assert gen == (0, 0, 513)  # res_id is the group, big endian
    assert found == {nflog.NFULA_CFG_CMD: bytes([nflog.NFULNL_CFG_CMD_BIND])}
    _, gen, found = parse_request(nflog.build_pf_unbind(1, socket.AF_INET6))
    assert gen == (socket.AF_INET6, 0, 0)
    assert found == {nflog.NFULA_CFG_CMD: bytes([nflog.NFULNL_CFG_CMD_PF_UNBIND])}
    _, _, found = parse_request(nflog.build_mode(1, 5))
    assert found == {nflog.NFULA_CFG_MODE: b"\x00\x00\xff\xff\x02\x00"}
    _, _, found = parse_request(nflog.build_flags(1, 5, 7))
    assert found == {nflog.NFULA_CFG_FLAGS: b"\x00\x07"}
    _, _, found = parse_request(nflog.build_config(1, 5, qthresh=3, timeout=10, nlbufsiz=9000))
    assert found == {nflog.NFULA_CFG_QTHRESH: struct.pack("!I", 3),
                     nflog.NFULA_CFG_TIMEOUT: struct.pack("!I", 10),
                     nflog.NFULA_CFG_NLBUFSIZ: struct.pack("!I", 9000)}
    hdr, _, _ = parse_request(nflog.build_unbind(1, 5, ack=False))
    assert hdr[2] == nlsock.NLM_F_REQUEST
    with pytest.raises(ValueError):
        nflog.build_bind(1, 65536)


# ---------------------------------------------------------------------------- ulogd's rules


def attr(atype: int, payload: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(payload), atype) + payload + bytes(-len(payload) % 4)


def message(*attributes: bytes, family: int = 2, mtype: int = nflog.MSG_PACKET) -> bytes:
    body = b"".join(attributes)
    return struct.pack("=IHHII", 20 + len(body), mtype, 0, 0, 0) + \
        struct.pack("!BBH", family, 0, 3) + body


HDR4 = attr(nflog.NFULA_PACKET_HDR, struct.pack("!HBx", 0x0800, 1))


def test_minimal_message_gets_family_raw_and_base_keys() -> None:
    msg = message(HDR4)
    assert decode_packet(msg, base=BASE) == {
        **BASE, "oob.family": 2, "raw": msg, "oob.protocol": 0x0800, "oob.hook": 1}
    assert decode_packet(msg) == {
        "oob.family": 2, "raw": msg, "oob.protocol": 0x0800, "oob.hook": 1}


def test_time_stamp_with_zero_seconds_is_not_valid() -> None:
    ts = attr(nflog.NFULA_TIMESTAMP, struct.pack("!QQ", 0, 1234))
    assert "oob.time.usec" not in decode_packet(message(HDR4, ts))
    ts = attr(nflog.NFULA_TIMESTAMP, struct.pack("!QQ", (1 << 32) + 5, 7))
    v = decode_packet(message(HDR4, ts))
    assert (v["oob.time.sec"], v["oob.time.usec"]) == (5, 7)  # ulogd keeps 32 bits


def test_interface_index_zero_is_not_valid() -> None:
    v = decode_packet(message(HDR4, attr(nflog.NFULA_IFINDEX_INDEV, b"\0\0\0\0"),
                              attr(nflog.NFULA_IFINDEX_OUTDEV, b"\0\0\0\x09")))
    assert "oob.ifindex_in" not in v and v["oob.ifindex_out"] == 9


@pytest.mark.parametrize(("hwlen", "hwtype", "header", "expect"), [
    (14, 1, b"h" * 14, {"raw.mac": b"h" * 14, "raw.mac_len": 14, "raw.type": 1}),
    (0, 1, b"h" * 14, {}),  # a zero length hides the header (ulogd tests the length)
    (None, 1, b"h" * 14, {}),
    (14, None, None, {"raw.mac": b"", "raw.mac_len": 14, "raw.type": 0}),
])
def test_link_header_needs_a_length(hwlen, hwtype, header, expect) -> None:
    parts = [HDR4]
    if hwtype is not None:
        parts.append(attr(nflog.NFULA_HWTYPE, struct.pack("!H", hwtype)))
    if hwlen is not None:
        parts.append(attr(nflog.NFULA_HWLEN, struct.pack("!H", hwlen)))
    if header is not None:
        parts.append(attr(nflog.NFULA_HWHEADER, header))
    v = decode_packet(message(*parts))
    assert {k: v[k] for k in ("raw.mac", "raw.mac_len", "raw.type") if k in v} == expect


def test_prefix_forms() -> None:
    def prefix(payload: bytes) -> str:
        return decode_packet(message(HDR4, attr(nflog.NFULA_PREFIX, payload)))["oob.prefix"]

    assert prefix(b"\0") == ""  # the rule had no prefix: present and empty
    assert prefix(b"") == ""
    assert prefix(b"abc\0junk") == "abc"
    assert prefix(b"no-nul") == "no-nul"
    odd = prefix(b"caf\xe9\0")  # not UTF-8: the bytes survive (file sinks write them back)
    assert odd.encode("utf-8", "surrogateescape") == b"caf\xe9"


def test_hardware_address_is_cut_to_its_length() -> None:
    hw = attr(nflog.NFULA_HWADDR, struct.pack("!H2x8s", 6, b"ABCDEFGH"))
    v = decode_packet(message(HDR4, hw))
    assert (v["raw.mac.saddr"], v["raw.mac.addrlen"]) == (b"ABCDEF", 6)
    hw = attr(nflog.NFULA_HWADDR, struct.pack("!H2x8s", 300, b"ABCDEFGH"))
    assert decode_packet(message(HDR4, hw))["raw.mac.saddr"] == b"ABCDEFGH"


def test_unknown_attributes_and_flag_bits() -> None:
    mark = struct.pack("!I", 0x2A)
    v = decode_packet(message(attr(0x3FF0, b"zz"), HDR4,
                              attr(nflog.NFULA_MARK | attrs.NLA_F_NET_BYTEORDER, mark)))
    assert v["oob.mark"] == 0x2A and v["oob.hook"] == 1


def test_other_messages_are_not_packets() -> None:
    assert decode_packet(message(HDR4, mtype=nflog.MSG_CONFIG)) is None
    assert decode_packet(message(mtype=nlsock.NLMSG_DONE)) is None


# ---------------------------------------------------------------------------- damage


def test_damaged_attribute_keeps_the_rest() -> None:
    short_mark = attr(nflog.NFULA_MARK, b"\0\x2a")
    prefix = attr(nflog.NFULA_PREFIX, b"p\0")
    with pytest.raises(PartialMessage) as info:
        decode_packet(message(HDR4, short_mark, prefix), base=BASE)
    v = info.value.values
    assert v["oob.prefix"] == "p" and v["oob.hook"] == 1 and v["oob.mark"] == 0


def test_broken_framing_keeps_what_came_before() -> None:
    msg = message(HDR4, attr(nflog.NFULA_PREFIX, b"p\0"))
    broken = msg + struct.pack("=HH", 200, nflog.NFULA_MARK)  # runs past the message
    broken = struct.pack("=I", len(broken)) + broken[4:]
    with pytest.raises(PartialMessage) as info:
        decode_packet(broken)
    assert info.value.values["oob.prefix"] == "p"


def test_truncated_recordings() -> None:
    """Every cut of every recorded message: a header error, or a partial decode whose
    values are a prefix of the full decode's attributes, never anything else."""
    for rec, off, mlen, mtype in messages():
        if mtype != nflog.MSG_PACKET:
            continue
        full = generic(rec["data"], off, mlen)
        msg = rec["data"][off : off + mlen]
        for cut in range(0, mlen, 3):
            short = struct.pack("=I", cut) + msg[4:cut] if cut >= 4 else msg[:cut]
            res = outcome(short)
            if cut < 20:
                assert res == "malformed"
                continue
            values = res[1] if isinstance(res, tuple) else res
            for key, value in values.items():
                if key in ("raw", "raw.mac") or BASE.get(key, -1) == value:
                    continue  # the message itself; a link header cut off counts as empty;
                    # the defaults every record has (mark 0 until the attribute is read)
                assert full[key] == value, (key, cut)
        assert outcome(struct.pack("=I", mlen + 4) + msg[4:]) == "malformed"


def test_range_checks() -> None:
    msg = message(HDR4)
    for args in ((-1, None), (0, len(msg) + 1), (4, len(msg))):
        with pytest.raises(MalformedMessage):
            decode_packet(msg, *args)
    # A bytearray or memoryview is copied: values never alias a reusable buffer.
    v = decode_packet(bytearray(msg))
    assert type(v["raw"]) is bytes
    assert decode_packet(memoryview(b"\xff" * 8 + msg), 8) == decode_packet(msg)


# ---------------------------------------------------------------------------- fast path


def test_fast_path_taken_for_every_recorded_packet(monkeypatch: pytest.MonkeyPatch) -> None:
    decode = nflog.NflogDecoder(compiled=False).decode
    for rec, off, mlen, mtype in messages():  # learn
        if mtype == nflog.MSG_PACKET:
            decode(rec["data"], off, mlen, BASE)

    def no_loop(*_a):
        raise AssertionError("generic loop used")

    monkeypatch.setattr(nflog, "_walk", no_loop)
    for (rec, expect), (rec2, off, mlen, _t) in zip(
            packets(), [m for m in messages() if m[3] == nflog.MSG_PACKET], strict=True):
        assert rec is rec2
        assert decode(rec["data"], off, mlen, BASE) == expect


def test_shape_learning_is_bounded() -> None:
    dec = nflog.NflogDecoder(compiled=False)  # (the compiled walker learns nothing)
    for i in range(4 * MAX_SHAPES + 10):  # every message a new shape
        dec.decode(message(HDR4, attr(nflog.NFULA_PREFIX, b"p" * (i % 200) + b"\0"),
                           attr(nflog.NFULA_PAYLOAD, b"x")))
    assert sum(len(s) for s in dec.shapes.values()) == MAX_SHAPES
    assert dec.attempts <= 0


def test_decoders_keep_their_shapes_to_themselves() -> None:
    """What one decoder learns is its own: another (or the default) is not changed by it."""
    msg = message(HDR4, attr(nflog.NFULA_PREFIX, b"own\0"), attr(nflog.NFULA_PAYLOAD, b"x"))
    first, second = nflog.NflogDecoder(compiled=False), nflog.NflogDecoder(compiled=False)
    before = {k: list(v) for k, v in nflog.default_decoder.shapes.items()}
    for _ in range(2):  # learnt, then through the shape
        assert first.decode(msg, 0, None, BASE) == second.decode(msg, 0, None, BASE) \
            == generic(msg)
    assert len(first.shapes) == 1 and first.shapes.keys() == second.shapes.keys()
    assert first.shapes[msg[20:32]][0][3] is not second.shapes[msg[20:32]][0][3]
    first.reset()
    assert not first.shapes and second.shapes
    assert nflog.default_decoder.shapes == before


RECORDED = st.sampled_from([rec["data"][off : off + mlen] for rec, off, mlen, t in messages()
                            if t == nflog.MSG_PACKET])
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_bounds(msg: bytes, res: dict | None | str) -> None:
    """No value comes from outside the message, no length claims more than it holds."""
    if not isinstance(res, (dict, tuple)):
        return
    values = res[1] if isinstance(res, tuple) else res
    for key, value in values.items():
        if isinstance(value, bytes):
            assert value in msg, key
    if "raw.pktlen" in values:
        assert values["raw.pktlen"] == len(values["raw.pkt"]) <= len(msg)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_never_raise_anything_else(data: bytes) -> None:
    check_bounds(data, outcome(data))


@FUZZ
@given(st.binary(max_size=200), st.integers(0, 3))
def test_random_attributes_behind_a_valid_header(body: bytes, family: int) -> None:
    msg = struct.pack("=IHHII", 20 + len(body), nflog.MSG_PACKET, 0, 0, 0) + \
        bytes([family, 0, 0, 1]) + body
    res = outcome(msg)
    check_bounds(msg, res)
    assert res == generic(msg)


@FUZZ
@given(RECORDED, st.lists(st.tuples(st.integers(0, 1700), st.integers(0, 255)), max_size=6))
def test_mutated_recordings(msg: bytes, flips: list[tuple[int, int]]) -> None:
    buf = bytearray(msg)
    for pos, val in flips:
        if pos < len(buf):
            buf[pos] = val
    mutated = bytes(buf)
    nflog.reset_shapes()
    outcome(msg)  # learn the original's shape: the mutated one must not be mistaken for it
    res = outcome(mutated)
    check_bounds(mutated, res)
    assert res == generic(mutated)
    # Nothing past the message is read: trailing junk changes nothing.
    assume(len(mutated) >= 4)
    assert outcome(mutated + b"\xff" * 64, 0, len(mutated)) == res


@FUZZ
@given(RECORDED, st.integers(0, 400), st.binary(max_size=40))
def test_spliced_recordings(msg: bytes, cut: int, insert: bytes) -> None:
    cut = min(cut, len(msg))
    spliced = msg[:cut] + insert + msg[cut:]
    spliced = struct.pack("=I", len(spliced)) + spliced[4:] if len(spliced) >= 4 else spliced
    nflog.reset_shapes()
    outcome(msg)
    res = outcome(spliced)
    check_bounds(spliced, res)
    assert res == generic(spliced)


# ---------------------------------------------------------------------------- the plugin


def make_plugin(**options):
    from ulogpy.plugins.input.nflog import NFLOG

    cfg = {o.name: o.default for o in NFLOG.options}
    cfg.update(options)
    plugin = NFLOG("log1", SimpleNamespace(**cfg))
    plugin.configure()
    out: list[dict] = []
    plugin.emit = out.append
    return plugin, out


def feed(plugin, group: int) -> None:
    for rec in records():
        if rec["group"] == group and rec["kind"] == "data":
            plugin.receive(rec["data"])


def test_plugin_counts_the_packets_the_kernel_dropped() -> None:
    plugin, out = make_plugin(group=13)
    feed(plugin, 13)
    flood = manifest()["flood"]
    assert len(out) + plugin.counters.get("lost") == flood["packets"] + flood["tail"]
    assert plugin.counters.get("lost") > 0
    # Not asked for: the numbers are used, not exported.
    assert not any("oob.seq.local" in r for r in out)


def test_plugin_exports_sequence_numbers_only_when_asked() -> None:
    plugin, out = make_plugin(group=10, seq_local=1, numeric_label=7)
    feed(plugin, 10)
    assert [r["oob.seq.local"] for r in out] == list(range(len(out)))
    assert plugin.counters.get("lost") == 0
    assert {r["raw.label"] for r in out} == {7}
    assert {r["raw.pktcount"] for r in out} == {1}


def test_plugin_time_falls_back_to_reception() -> None:
    import time

    plugin, out = make_plugin(group=10)
    before = int(time.time())
    feed(plugin, 10)
    for r in out:
        assert 0 <= r["oob.time.usec"] < 10**6
        if r["oob.hook"] == 3:  # no kernel stamp: now
            assert before <= r["oob.time.sec"] <= before + 2
        else:
            assert r["oob.time.sec"] < before


def test_plugin_logs_a_damaged_packet_and_counts_it() -> None:
    plugin, out = make_plugin()
    good = message(HDR4, attr(nflog.NFULA_PREFIX, b"ok\0"))
    damaged = message(HDR4, attr(nflog.NFULA_MARK, b"\0"), attr(nflog.NFULA_PREFIX, b"d\0"))
    garbage = struct.pack("=IHHII", 8, nflog.MSG_PACKET, 0, 0, 0)
    plugin.receive(good + damaged)
    plugin.receive(garbage)
    assert [r["oob.prefix"] for r in out] == ["ok", "d"]
    assert plugin.counters.get("malformed_attrs") == 1
    assert plugin.counters.get("malformed") == 1


def test_plugin_tells_a_datagram_cut_at_bufsize_from_garbage() -> None:
    plugin, out = make_plugin(bufsize=100)
    two = message(HDR4, attr(nflog.NFULA_PREFIX, b"a\0")) + \
        message(HDR4, attr(nflog.NFULA_PAYLOAD, b"p" * 80))
    plugin.receive(two[:100])  # what recv(100) returns of it
    assert [r["oob.prefix"] for r in out] == ["a"]
    assert plugin.counters.get("truncated") == 1 and plugin.counters.get("malformed") == 0


class ScriptedSocket:
    """A netlink socket whose `recv` plays a script (data, errno, or 'again')."""

    def __init__(self, script: list) -> None:
        self.real = nlsock.open_socket()
        self.script = list(script)

    def recv(self, size: int) -> bytes:
        step = self.script.pop(0) if self.script else "again"
        if step == "again":
            raise BlockingIOError
        if isinstance(step, int):
            raise OSError(step, "scripted")
        return step

    def setsockopt(self, *a):
        return self.real.setsockopt(*a)

    def getsockopt(self, *a):
        return self.real.getsockopt(*a)

    def close(self) -> None:
        self.real.close()


def test_read_loop_drains_counts_overruns_and_grows_the_buffer() -> None:
    plugin, out = make_plugin(group=13, netlink_socket_buffer_maxsize=1 << 16)
    data = [rec["data"] for rec in records() if rec["group"] == 13 and rec["kind"] == "data"]
    sock = ScriptedSocket([data[0], errno.ENOBUFS, errno.ENOBUFS, data[1], "again", data[0]])
    try:
        plugin.sock = sock
        plugin.rcvbuf = nlsock.set_rcvbuf(sock.real, 4096)
        start = plugin.rcvbuf
        plugin.on_readable()
        # One wake-up read everything that was ready, up to EAGAIN.
        assert sock.script == [data[0]]
        assert plugin.counters.get("overruns") == 2
        assert plugin.rcvbuf == min(start * 4, 1 << 16)
        assert len(out) + plugin.counters.get("lost") == \
            manifest()["flood"]["packets"] + manifest()["flood"]["tail"]
    finally:
        sock.close()


def test_read_loop_is_bounded_and_reads_ahead() -> None:
    """A wake-up decodes READS_PER_WAKEUP datagrams at most, but first moves up to
    READ_AHEAD of them out of the socket (the kernel's buffer is where a burst is lost);
    the rest is decoded on the next turns, in order, none twice."""
    from ulogpy.transports import netlink_input as plugin_module

    class Loop:
        def __init__(self) -> None:
            self.soon: list = []

        def call_later(self, delay: float, callback) -> None:
            self.soon.append(callback)

    plugin, out = make_plugin()
    plugin.loop = loop = Loop()
    total = plugin_module.READ_AHEAD + 5
    sock = ScriptedSocket([message(HDR4, attr(nflog.NFULA_PREFIX, b"%d\0" % i))
                           for i in range(total)])
    try:
        plugin.sock = sock
        plugin.on_readable()
        assert len(out) == plugin_module.READS_PER_WAKEUP
        assert len(sock.script) == 5  # read ahead: all but what exceeded READ_AHEAD
        assert len(loop.soon) == 1  # the next turn is asked for, the socket aside
        while loop.soon:
            loop.soon.pop()()
        assert [r["oob.prefix"] for r in out] == [str(i) for i in range(total)]
        assert not sock.script and not plugin._ahead and plugin._ahead_bytes == 0
    finally:
        sock.close()


def test_catch_up_decodes_everything_read_ahead() -> None:
    plugin, out = make_plugin()
    sock = ScriptedSocket([message(HDR4, attr(nflog.NFULA_PREFIX, b"%d\0" % i))
                           for i in range(600)])
    try:
        plugin.sock = sock
        plugin.on_readable()
        assert len(out) == 256 and len(plugin._ahead) == 344
        plugin.catch_up()
        assert len(out) == 600 and not plugin._ahead
    finally:
        sock.close()
