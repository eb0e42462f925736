"""UNIXSOCK: frame decoding, stream reassembly and the listening socket's life cycle.

Frames are built here the way `tests/fixtures/unixsock/send_unixsock.py` (the script that
produced ulogd's golden files) builds them; what each frame must decode to is what real
ulogd 2.0.8 showed for those frames in the golden files (`raw.pktlen` is the declared
payload length, `oob.family` comes from the IP version, no `oob.time.sec` without
option 4, `raw.label` only from option 206, the time in host order).
"""

from __future__ import annotations

import os
import socket
import stat
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ulogpy.plugins.input.unixsock import (
    MARKER,
    UNIXSOCK,
    FrameBuffer,
    LostFraming,
    decode_frame,
)

from tests.readers import Readers
from tests.ulogd_ref import ULOGPY
from ulogpy.config.errors import ConfigError
from ulogpy.config.load import load_config
from ulogpy.config.model import options_model
from ulogpy.core.plugin import Counters, PluginError
from ulogpy.core.stack import build_pipeline

IPV4_TCP = bytes.fromhex("4510002830394000400600000a0000010a000001") + bytes(20)
IPV6_UDP = bytes.fromhex("6201234500140b3f") + bytes(32) + bytes(20)


def _pad8(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 8)


def opt(oid: int, value: bytes, length: int | None = None) -> bytes:
    """One option; `length` overrides the declared length (for broken frames)."""
    declared = len(value) if length is None else length
    return struct.pack("!II", oid, declared) + _pad8(value)


def frame(pkt: bytes, opts: bytes = b"", plen: int | None = None, marker: int = MARKER) -> bytes:
    body = struct.pack("!IH", 0, len(pkt) if plen is None else plen) + pkt
    if opts:
        body += b"\0" * (-len(pkt) % 8) + opts
    return struct.pack("!IH", marker, 2 + len(body)) + body


def nufw_opts(prefix: bytes = b"PFX:x") -> bytes:
    return (opt(1, prefix + b"\0") + opt(2, b"eth0\0") + opt(3, b"\0")
            + opt(4, struct.pack("=I", 1700000000)) + opt(206, b"\x01"))


def decode(data: bytes) -> tuple[dict | None, Counters]:
    counters = Counters()
    return decode_frame(data, counters), counters


# -- decoding ------------------------------------------------------------------------


def test_all_ulogd_options_decode_to_their_keys() -> None:
    opts = (nufw_opts(b"PFX:tcp-syn") + opt(200, b"alice\0") + opt(201, struct.pack("=I", 1001))
            + opt(202, b"Linux\0") + opt(203, b"6.1\0") + opt(204, b"#1 SMP\0")
            + opt(205, b"/usr/bin/curl\0"))
    record, counters = decode(frame(IPV4_TCP, opts))
    assert record == {
        "raw.pkt": IPV4_TCP, "raw.pktlen": 40, "raw.pktcount": 1, "oob.family": 2,
        "oob.prefix": "PFX:tcp-syn", "oob.in": "eth0", "oob.out": "",
        "oob.time.sec": 1700000000, "raw.label": 1, "nufw.user.name": "alice",
        "nufw.user.id": 1001, "nufw.os.name": "Linux", "nufw.os.rel": "6.1",
        "nufw.os.vers": "#1 SMP", "nufw.app.name": "/usr/bin/curl",
    }
    assert counters.values == {}


def test_without_options_only_the_packet_keys() -> None:
    """No time, no label, no oob.protocol: LOGEMU/JSON then take the time of writing."""
    record, _ = decode(frame(IPV6_UDP))
    assert record == {"raw.pkt": IPV6_UDP, "raw.pktlen": 60, "raw.pktcount": 1,
                      "oob.family": 10}


def test_options_never_leak_from_the_next_frame() -> None:
    """ulogd 2.0.8 walks past the end of a frame without options into the bytes after it,
    so the next frame's prefix lands in this packet (seen with real ulogd); not here."""
    counters = Counters()
    data = frame(IPV4_TCP[:28]) + frame(IPV4_TCP, opt(1, b"X\0"))
    records = [decode_frame(f, counters) for f in FrameBuffer(65536).feed(data)]
    assert "oob.prefix" not in records[0] and records[1]["oob.prefix"] == "X"
    assert counters.values == {}


@pytest.mark.parametrize(("first", "family"), [(0x45, 2), (0x60, 10), (0x00, 0), (0x50, 0)])
def test_family_from_ip_version(first: int, family: int) -> None:
    record, _ = decode(frame(bytes([first]) + bytes(27), opt(2, b"eth0\0")))
    assert record["oob.family"] == family


def test_empty_payload_has_family_0() -> None:
    record, _ = decode(frame(b"", opt(1, b"p\0")))
    assert record["oob.family"] == 0 and record["raw.pkt"] == b"" and record["oob.prefix"] == "p"


def test_strings_stop_at_nul_and_keep_undecodable_bytes() -> None:
    record, _ = decode(frame(IPV4_TCP, opt(1, b"a\xffb\0junk") + opt(2, b"no-nul")))
    assert record["oob.prefix"] == "a\udcffb"
    assert record["oob.prefix"].encode("utf-8", "surrogateescape") == b"a\xffb"
    assert record["oob.in"] == "no-nul"


def test_time_is_read_in_host_order() -> None:
    record, _ = decode(frame(IPV4_TCP, opt(4, (1700000000).to_bytes(4, "little"))))
    expected = 1700000000 if sys.byteorder == "little" else 0x00F15365
    assert record["oob.time.sec"] == expected


def test_unknown_option_is_counted_and_skipped() -> None:
    record, counters = decode(frame(IPV4_TCP, opt(99, b"abcdefghij") + opt(2, b"eth1\0")))
    assert record["oob.in"] == "eth1"
    assert counters.get("unknown_options") == 1


def test_too_short_numeric_option_is_counted() -> None:
    record, counters = decode(frame(IPV4_TCP, opt(4, b"\1\2") + opt(206, b"") + opt(2, b"x\0")))
    assert "oob.time.sec" not in record and "raw.label" not in record
    assert record["oob.in"] == "x"
    assert counters.get("malformed_options") == 2


def test_option_running_past_the_frame_ends_the_walk() -> None:
    record, counters = decode(frame(IPV4_TCP, opt(2, b"eth0\0") + opt(1, b"abc\0", length=500)))
    assert record["oob.in"] == "eth0" and "oob.prefix" not in record
    assert counters.get("malformed_options") == 1


def test_trailing_bytes_shorter_than_an_option_header_are_counted() -> None:
    good = frame(IPV4_TCP, opt(2, b"eth0\0"))
    broken = struct.pack("!IH", MARKER, struct.unpack_from("!H", good, 4)[0] + 4) \
        + good[6:] + b"\0\0\0\7"
    record, counters = decode(broken)
    assert record["oob.in"] == "eth0"
    assert counters.get("malformed_options") == 1


def test_payload_longer_than_the_frame_is_skipped() -> None:
    record, counters = decode(frame(IPV4_TCP, plen=200))
    assert record is None and counters.get("bad_frames") == 1


def test_truncated_ip_packet_keeps_the_declared_length() -> None:
    """ulogd's tcp-truncated case: 24 bytes sent, IP total length 60, raw.pktlen 24."""
    pkt = IPV4_TCP[:24]
    record, _ = decode(frame(pkt, opt(2, b"eth0\0")))
    assert record["raw.pktlen"] == 24 and record["raw.pkt"] == pkt


# -- reassembly ----------------------------------------------------------------------


def _stream(n: int = 5) -> tuple[bytes, list[bytes]]:
    frames = [frame(IPV4_TCP if i % 2 else IPV6_UDP, nufw_opts(b"P%d" % i) if i % 3 else b"")
              for i in range(n)]
    return b"".join(frames), frames


def test_several_frames_in_one_read() -> None:
    data, frames = _stream()
    assert list(FrameBuffer(65536).feed(data)) == frames


def test_frames_split_at_every_byte() -> None:
    data, frames = _stream()
    buf = FrameBuffer(65536)
    got = [f for i in range(len(data)) for f in buf.feed(data[i : i + 1])]
    assert got == frames and buf.pending == b""


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=200), min_size=1, max_size=40))
def test_frames_survive_any_split(sizes: list[int]) -> None:
    data, frames = _stream(7)
    buf = FrameBuffer(65536)
    got, pos, i = [], 0, 0
    while pos < len(data):
        step = sizes[i % len(sizes)]
        got += buf.feed(data[pos : pos + step])
        pos += step
        i += 1
    assert got == frames


def test_bad_marker_loses_the_framing() -> None:
    data, frames = _stream(2)
    buf = FrameBuffer(65536)
    got = []
    with pytest.raises(LostFraming, match="marker"):
        for f in buf.feed(data + frame(IPV4_TCP, marker=0xDEADBEEF)):
            got.append(f)
    assert got == frames and buf.pending == b""


def test_bad_marker_seen_before_the_frame_is_complete() -> None:
    buf = FrameBuffer(65536)
    with pytest.raises(LostFraming):
        list(buf.feed(b"GET "))


@pytest.mark.parametrize("size", [0, 7])
def test_frame_size_below_the_header_loses_the_framing(size: int) -> None:
    with pytest.raises(LostFraming, match="shorter"):
        list(FrameBuffer(65536).feed(struct.pack("!IH", MARKER, size) + bytes(16)))


def test_frame_larger_than_bufsize_loses_the_framing() -> None:
    data = frame(IPV4_TCP, nufw_opts())
    assert list(FrameBuffer(len(data)).feed(data)) == [data]
    with pytest.raises(LostFraming, match="bufsize"):
        list(FrameBuffer(len(data) - 1).feed(data))


# -- the plugin with a real socket -----------------------------------------------------


def make_plugin(path: Path, **options) -> tuple[UNIXSOCK, Readers, list[dict]]:
    cfg = options_model(UNIXSOCK)(socket_path=str(path), **options)
    plugin = UNIXSOCK("us1", cfg)
    plugin.configure()
    records: list[dict] = []
    plugin.emit = records.append
    loop = Readers()
    plugin.start(loop)
    return plugin, loop, records


def connect(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(path))
    return s


def test_socket_life_cycle(tmp_path: Path) -> None:
    path = tmp_path / "run" / "u.sock"  # the directory is created
    plugin, loop, records = make_plugin(path)
    st_ = os.stat(path)
    assert stat.S_ISSOCK(st_.st_mode) and stat.S_IMODE(st_.st_mode) == 0o600
    client = connect(path)
    loop.run_once()  # accept
    data, _ = _stream(4)
    client.sendall(data[:13])
    loop.run_once()
    assert records == []
    client.sendall(data[13:])
    loop.run_once()
    assert [r["raw.pktlen"] for r in records] == [60, 40, 60, 40]
    assert plugin.counters.get("frames") == 4
    client.close()
    loop.run_once()  # EOF: the client is dropped
    assert plugin.client is None
    plugin.stop()
    assert not path.exists()


def test_second_client_is_rejected_then_welcome(tmp_path: Path) -> None:
    path = tmp_path / "u.sock"
    plugin, loop, records = make_plugin(path)
    first = connect(path)
    loop.run_once()
    second = connect(path)
    loop.run_once()
    assert plugin.counters.get("clients_rejected") == 1
    second.settimeout(2)
    assert second.recv(10) == b""  # closed by the daemon, as ulogd does
    first.close()
    loop.run_once()
    third = connect(path)
    loop.run_once()
    third.sendall(frame(IPV4_TCP, nufw_opts()))
    loop.run_once()
    assert len(records) == 1 and records[0]["oob.prefix"] == "PFX:x"
    third.close()
    plugin.stop()


def test_garbage_closes_the_client_and_the_next_one_works(tmp_path: Path) -> None:
    path = tmp_path / "u.sock"
    plugin, loop, records = make_plugin(path)
    bad = connect(path)
    loop.run_once()
    bad.sendall(frame(IPV4_TCP) + b"HTTP/1.0 200 OK\r\n")
    loop.run_once()
    assert len(records) == 1 and plugin.counters.get("bad_streams") == 1
    assert plugin.client is None
    bad.settimeout(2)
    assert bad.recv(10) == b""
    good = connect(path)
    loop.run_once()
    good.sendall(frame(IPV6_UDP))
    loop.run_once()
    assert len(records) == 2 and records[1]["oob.family"] == 10
    plugin.stop()


def test_client_leaving_mid_frame_is_counted(tmp_path: Path) -> None:
    path = tmp_path / "u.sock"
    plugin, loop, records = make_plugin(path)
    c = connect(path)
    loop.run_once()
    c.sendall(frame(IPV4_TCP)[:-3])
    c.close()
    loop.run_once()
    assert records == [] and plugin.counters.get("truncated_frames") == 1
    plugin.stop()


def test_stale_socket_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "u.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody listens: what a killed daemon leaves
    plugin, loop, records = make_plugin(path)
    c = connect(path)
    loop.run_once()
    c.sendall(frame(IPV4_TCP))
    loop.run_once()
    assert len(records) == 1
    plugin.stop()


def test_live_socket_is_not_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "u.sock"
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(str(path))
    other.listen(1)
    try:
        with pytest.raises(PluginError, match="in use by another process"):
            make_plugin(path)
        assert path.exists()
    finally:
        other.close()


def test_other_file_is_not_removed(tmp_path: Path) -> None:
    path = tmp_path / "u.sock"
    path.write_text("precious")
    with pytest.raises(PluginError, match="exists and is not a socket"):
        make_plugin(path)
    assert path.read_text() == "precious"


def test_stop_leaves_a_successors_socket_alone(tmp_path: Path) -> None:
    path = tmp_path / "u.sock"
    plugin, _, _ = make_plugin(path)
    path.unlink()
    successor = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    successor.bind(str(path))
    plugin.stop()
    assert path.exists()
    successor.close()


def test_perms_owner_group_applied(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    path = tmp_path / "u.sock"
    plugin, _, _ = make_plugin(path, perms="0660", owner="nobody", group="nogroup")
    st_ = os.stat(path)
    assert stat.S_IMODE(st_.st_mode) == 0o660
    assert (st_.st_uid, st_.st_gid) == (65534, 65534)
    plugin.stop()


BAD_OPTIONS = [
    ('owner="no-such-user-x"', ["[us1]", "owner", "no user 'no-such-user-x'"]),
    ('group="no-such-group-x"', ["[us1]", "group", "no group 'no-such-group-x'"]),
    ("perms=0100000", ["[us1]", "perms", "not a file mode"]),
    ("bufsize=-1", ["[us1]", "bufsize", ">= 0"]),
    ('socket_path="/tmp/' + "x" * 120 + '"', ["[us1]", "socket_path", "107 bytes"]),
]


def _conf_with(tmp_path: Path, line: str) -> Path:
    conf = tmp_path / "u.conf"
    conf.write_text(
        "[global]\nstack=us1:UNIXSOCK,j1:JSON\n"
        f"[us1]\n{line}\n[j1]\nfile=\"{tmp_path}/j.json\"\n"
    )
    return conf


@pytest.mark.parametrize(("line", "expect"), BAD_OPTIONS)
def test_bad_options_are_named(tmp_path: Path, line: str, expect: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        build_pipeline(load_config(str(_conf_with(tmp_path, line))))
    for fragment in expect:
        assert fragment in str(err.value)


def test_bad_owner_through_the_cli(tmp_path: Path) -> None:
    """Exit 1 and one clear line, no traceback, as for every config error."""
    proc = subprocess.run([ULOGPY, "--check", "-c", str(_conf_with(tmp_path, BAD_OPTIONS[0][0]))],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "u.conf:4: [us1] owner: no user 'no-such-user-x'" in proc.stderr, proc.stderr
