"""HWHDR, MARK, IP2BIN, IP2HBIN, IP2STR and IFINDEX against ulogd 2.0.8.

The oracle is ulogd's own plugin called in-process (`tests.ulogd_so`) on the same
input, for chosen and for random records; IP2HBIN also against the GPRINT lines real
ulogd wrote (`tests/fixtures/unixsock/gprint.log`), IFINDEX's table against libc's.
"""

from __future__ import annotations

import errno
import socket
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ulogpy.plugins.filter import ifnames
from ulogpy.plugins.filter.hwhdr import HWHDR
from ulogpy.plugins.filter.ifindex import IFINDEX
from ulogpy.plugins.filter.ip2bin import IP2BIN
from ulogpy.plugins.filter.ip2hbin import IP2HBIN
from ulogpy.plugins.filter.ip2str import IP2STR
from ulogpy.plugins.filter.mark import MARK

from tests import ulogd_so
from ulogpy.netlink import nlsock

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
needs_oracle = pytest.mark.skipif(ulogd_so.skip_reason() is not None,
                                  reason=str(ulogd_so.skip_reason()))
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def ours_stops(result: bool | None) -> bool:
    assert result in (None, False)
    return result is False


# == HWHDR =================================================================================
HWHDR_OUT = ("raw.type", "oob.protocol", "mac.saddr.str", "mac.daddr.str", "mac.str")
ETH = bytes.fromhex("020000000002" "020000000001" "0800")
LOOPBACK = bytes(12) + b"\x08\x00"

HWHDR_CASES = {
    # NFLOG on an Ethernet input: header, hardware address and ARPHRD_ETHER
    "nflog_ethernet": {"raw.type": 1, "oob.protocol": 0x0800, "raw.mac": ETH, "raw.mac_len": 14,
                       "raw.mac.saddr": ETH[6:12], "raw.mac.addrlen": 6},
    # the loopback packet of spec 4.7 (samples/netns/t5_pkt.json)
    "nflog_loopback": {"raw.type": 772, "oob.protocol": 0x0800, "raw.mac": LOOPBACK,
                       "raw.mac_len": 14, "raw.mac.saddr": bytes(6), "raw.mac.addrlen": 6},
    "ethernet_without_saddr": {"raw.type": 1, "oob.protocol": 0x86DD, "raw.mac": ETH,
                               "raw.mac_len": 14},
    "no_type_14_bytes_is_ethernet": {"oob.protocol": 0, "raw.mac": ETH, "raw.mac_len": 14},
    "no_type_other_length_is_void": {"oob.protocol": 0, "raw.mac": ETH + b"\x01",
                                     "raw.mac_len": 15},
    "saddr_only": {"oob.protocol": 0x0800, "raw.mac.saddr": ETH[:6], "raw.mac.addrlen": 6},
    "saddr_without_addrlen": {"oob.protocol": 0x0800, "raw.mac.saddr": ETH[:6]},
    "mac_without_len": {"oob.protocol": 0x0800, "raw.type": 1, "raw.mac": ETH},
    "nothing": {"oob.protocol": 0x0800},
    "nothing_no_protocol": {},
    "header_42_bytes": {"raw.type": 778, "raw.mac": bytes(range(42)), "raw.mac_len": 42},
    "header_43_bytes": {"raw.type": 778, "raw.mac": bytes(range(43)), "raw.mac_len": 43},
    "saddr_43_bytes": {"raw.mac.saddr": bytes(43), "raw.mac.addrlen": 43},
    "mac_len_zero": {"raw.type": 65534, "raw.mac": ETH, "raw.mac_len": 0},
}


def check_hwhdr(record: dict) -> None:
    rc, want = ulogd_so.ulogd_filter("HWHDR").run(record)
    ours = dict(record)
    stopped = ours_stops(HWHDR("h", None).interp(ours))
    assert stopped == (rc == ulogd_so.ERR)
    if stopped:
        return
    got = {name: ours[name] for name in HWHDR_OUT if name in ours}
    assert got == want


@needs_oracle
@pytest.mark.parametrize("name", sorted(HWHDR_CASES))
def test_hwhdr_same_as_ulogd(name: str) -> None:
    check_hwhdr(HWHDR_CASES[name])


@st.composite
def hwhdr_records(draw) -> dict:
    record = {}
    if draw(st.booleans()):
        record["raw.type"] = draw(st.sampled_from([1, 772, 0xFFFF, 778, 24]))
    if draw(st.integers(0, 3)):
        record["oob.protocol"] = draw(st.integers(0, 0xFFFF))
    if draw(st.booleans()):
        # at least a full Ethernet header: ulogd reads 14 bytes for ARPHRD_ETHER
        mac = draw(st.binary(min_size=14, max_size=48))
        record["raw.mac"] = mac
        if draw(st.integers(0, 3)):
            record["raw.mac_len"] = draw(st.sampled_from([14, 0, len(mac)]))
    if draw(st.booleans()):
        saddr = draw(st.binary(max_size=46))
        record["raw.mac.saddr"] = saddr
        if draw(st.integers(0, 3)):
            record["raw.mac.addrlen"] = draw(st.integers(0, len(saddr)))
    return record


@needs_oracle
@FAST
@given(hwhdr_records())
def test_hwhdr_random_same_as_ulogd(record: dict) -> None:
    check_hwhdr(record)


@FAST
@given(st.lists(hwhdr_records(), min_size=1, max_size=6), st.randoms())
def test_hwhdr_remembered_headers_give_what_a_fresh_instance_gives(records, rng) -> None:
    """The memo of texts per header: records seen again (any order, bytes-like values
    too) get the same keys, in the same order, the same result and the same counts."""
    warm, fresh_counts = HWHDR("warm", None), HWHDR("counts", None)
    seen = records + [dict(r) for r in records]
    rng.shuffle(seen)
    for record in seen:
        if "raw.mac" in record and rng.random() < 0.2:
            record = {**record, "raw.mac": bytearray(record["raw.mac"])}
        elif "raw.mac" in record and rng.random() < 0.2:  # short for Ethernet: counted
            record = {**record, "raw.type": 1, "raw.mac": record["raw.mac"][:10]}
        mine, theirs = dict(record), dict(record)
        assert warm.interp(mine) == HWHDR("fresh", None).interp(theirs)
        assert list(mine.items()) == list(theirs.items())
        fresh_counts.interp(dict(record))
        fresh_counts.memo.clear()
    assert warm.counters.snapshot() == fresh_counts.counters.snapshot()


def test_hwhdr_hides_upstream_raw_type_it_does_not_set() -> None:
    """A consumer of raw.type binds to HWHDR's, which ulogd leaves unset without a header."""
    record = {"oob.protocol": 0x0800, "raw.type": 1}
    assert HWHDR("h", None).interp(record) is None
    assert "raw.type" not in record and record["oob.protocol"] == 0x0800


# == MARK ==================================================================================
@needs_oracle
@FAST
@given(
    mark=st.one_of(st.sampled_from([0, 1, 0x2A, -1, 0x7FFFFFFF]), st.integers(-2**31, 2**31 - 1)),
    mask=st.one_of(st.sampled_from([-1, 0, 0xFF, 0x0F]), st.integers(-2**31, 2**31 - 1)),
    ct_mark=st.one_of(st.none(), st.sampled_from([0, 0x2A, 0xFFFFFFFF]), st.integers(0, 2**32 - 1)),
    oob_mark=st.one_of(st.none(), st.sampled_from([0, 0x2A]), st.integers(0, 2**32 - 1)),
)
def test_mark_same_as_ulogd(mark: int, mask: int, ct_mark: int | None,
                            oob_mark: int | None) -> None:
    oracle = ulogd_so.ulogd_filter("MARK")
    mark_slot, mask_slot = oracle.config_entry_value("mark"), oracle.config_entry_value("mask")
    saved = mark_slot.value, mask_slot.value
    record = {k: v for k, v in (("ct.mark", ct_mark), ("oob.mark", oob_mark)) if v is not None}
    try:
        mark_slot.value, mask_slot.value = mark, mask
        rc, _ = oracle.run(record, use_config=True)
    finally:
        mark_slot.value, mask_slot.value = saved
    plugin = MARK("m", SimpleNamespace(mark=mark & 0xFFFFFFFF if mark < 0 else mark, mask=mask))
    plugin.configure()
    assert ours_stops(plugin.interp(dict(record))) == (rc == ulogd_so.STOP)
    assert rc in (ulogd_so.OK, ulogd_so.STOP)


@needs_oracle
def test_mark_defaults_are_ulogds() -> None:
    oracle = ulogd_so.ulogd_filter("MARK")
    defaults = {o.name: o.default for o in MARK.options}
    assert oracle.config_entry_value("mark").value == defaults["mark"]
    assert oracle.config_entry_value("mask").value & 0xFFFFFFFF == defaults["mask"]


# == IP2BIN / IP2HBIN / IP2STR =============================================================
ADDRESS_KEYS = ("ip.saddr", "ip.daddr", "orig.ip.saddr", "orig.ip.daddr", "reply.ip.saddr",
                "reply.ip.daddr", "arp.saddr", "arp.daddr")
FAMILIES = [2, 10, 7, 3, 0, 12]
ETHERTYPES = [0x0800, 0x86DD, 0x0806, 0x8100, 0]


def _width(record: dict) -> int | None:
    """The address size the plugins will decide on (None: no family)."""
    fam, proto = record["oob.family"], record.get("oob.protocol")
    if fam == 2 or (fam == 7 and proto in (0x0800, 0x0806)):
        return 4
    if fam == 10 or (fam == 7 and proto == 0x86DD):
        return 16
    return None


@st.composite
def address_records(draw) -> dict:
    record = {"oob.family": draw(st.sampled_from(FAMILIES))}
    if draw(st.integers(0, 3)):
        record["oob.protocol"] = draw(st.sampled_from(ETHERTYPES))
    width = _width(record) or draw(st.sampled_from([4, 16]))
    for name in ADDRESS_KEYS:
        if draw(st.booleans()):
            record[name] = draw(st.binary(min_size=width, max_size=width))
    return record


PLUGINS = {"IP2BIN": IP2BIN, "IP2HBIN": IP2HBIN, "IP2STR": IP2STR}


def run_both(name: str, record: dict) -> tuple[int, dict, bool, dict]:
    rc, want = ulogd_so.ulogd_filter(name).run(record)
    cls = PLUGINS[name]
    ours = dict(record)
    stopped = ours_stops(cls("x", None).interp(ours))
    got = {k.name: ours[k.name] for k in cls.output_keys if k.name in ours}
    return rc, want, stopped, got


@needs_oracle
@FAST
@pytest.mark.parametrize("name", ["IP2BIN", "IP2STR"])
@given(record=address_records())
def test_address_text_same_as_ulogd(name: str, record: dict) -> None:
    rc, want, stopped, got = run_both(name, record)
    assert stopped == (rc == ulogd_so.ERR)
    if not stopped:
        assert got == want


@needs_oracle
@FAST
@given(address_records())
def test_ip2hbin_same_as_ulogd(record: dict) -> None:
    rc, want, stopped, got = run_both("IP2HBIN", record)
    assert stopped == (rc == ulogd_so.ERR)
    if stopped:
        return
    assert set(got) == set(want)
    if _width(record) == 4:
        # ulogd's value is the host-order integer: its 4 bytes in memory are ours
        assert got == {k: v[:4] for k, v in want.items()}
    else:
        # ulogd 2.0.8 stores a pointer here (bug B6); ulogpy the address bytes unchanged
        for out_name, value in got.items():
            in_name = out_name.replace(".h", ".")
            assert value == record[in_name]


def test_reply_daddr_is_never_converted() -> None:
    """Kept off-by-one (B6): the output key exists but is never set."""
    record = {"oob.family": 2, "oob.protocol": 0x0800,
              "reply.ip.daddr": socket.inet_aton("10.0.0.1")}
    assert IP2BIN("b", None).interp(record) is None
    assert IP2HBIN("h", None).interp(record) is None
    assert "reply.ip.daddr.bin" in {k.name for k in IP2BIN.output_keys}
    assert "reply.ip.hdaddr" in {k.name for k in IP2HBIN.output_keys}
    assert set(record) == {"oob.family", "oob.protocol", "reply.ip.daddr"}


def test_refusal_is_counted() -> None:
    plugin = IP2HBIN("h", None)
    for _ in range(3):
        assert plugin.interp({"oob.family": 3, "oob.protocol": 0}) is False
    assert plugin.counters.get("unknown_family") == 3
    bridge = IP2STR("s", None)
    assert bridge.interp({"oob.family": 7, "ip.saddr": bytes(4)}) is False
    assert bridge.counters.get("no_bridge_protocol") == 1


def _gprint_fields(line: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in line.split(","))


def test_ip2hbin_matches_ulogd_gprint_lines() -> None:
    """GPRINT prints an IP value's 4 bytes in memory order: ulogd's ip.hsaddr there must be
    what ours prints for the ip.saddr of the same line."""
    checked = 0
    for line in (FIXTURES / "unixsock/gprint.log").read_text().splitlines():
        fields = _gprint_fields(line)
        if fields["oob.family"] != "2":
            continue
        record = {"oob.family": 2, "oob.protocol": int(fields["oob.protocol"]),
                  "ip.saddr": socket.inet_aton(fields["ip.saddr"]),
                  "ip.daddr": socket.inet_aton(fields["ip.daddr"])}
        IP2HBIN("h", None).interp(record)
        assert socket.inet_ntoa(record["ip.hsaddr"]) == fields["ip.hsaddr"]
        assert socket.inet_ntoa(record["ip.hdaddr"]) == fields["ip.hdaddr"]
        checked += 1
    assert checked >= 10


# == IFINDEX ===============================================================================
def _ifindex(names: dict[int, str]) -> IFINDEX:
    plugin = IFINDEX("i", None)
    plugin.configure()
    plugin.cache = ifnames.InterfaceNames(names)
    return plugin


def test_ifindex_names_both_directions_always() -> None:
    plugin = _ifindex({1: "lo", 7: "eth0"})
    record = {"oob.ifindex_in": 7}
    assert plugin.interp(record) is None
    assert (record["oob.in"], record["oob.out"]) == ("eth0", "")
    record = {}
    plugin.interp(record)
    assert (record["oob.in"], record["oob.out"]) == ("", "")
    record = {"oob.ifindex_in": 1, "oob.ifindex_out": 7}
    plugin.interp(record)
    assert (record["oob.in"], record["oob.out"]) == ("lo", "eth0")


def test_ifindex_unknown_index_is_empty_and_counted_not_the_previous_name() -> None:
    plugin = _ifindex({7: "eth0"})
    plugin.interp({"oob.ifindex_in": 7})
    record = {"oob.ifindex_in": 99, "oob.ifindex_out": 98}
    plugin.interp(record)
    assert (record["oob.in"], record["oob.out"]) == ("", "")
    assert plugin.counters.get("unknown_ifindex") == 2


def _link_message(mtype: int, index: int, name: str | None, family: int = 0) -> bytes:
    attrs = b""
    if name is not None:
        raw = name.encode() + b"\0"
        attrs = struct.pack("=HH", 4 + len(raw), ifnames.IFLA_IFNAME) + raw
        attrs += b"\0" * (-len(attrs) % 4)
    body = ifnames.IFINFOMSG.pack(family, 1, index, 0, 0) + attrs
    return nlsock.NLMSGHDR.pack(16 + len(body), mtype, 0, 0, 0) + body


def test_link_notifications_update_the_table() -> None:
    cache = ifnames.InterfaceNames({3: "eth0"})
    msgs = [
        _link_message(ifnames.RTM_NEWLINK, 4, "veth1"),
        _link_message(ifnames.RTM_NEWLINK, 3, "wan0"),                 # rename
        _link_message(ifnames.RTM_NEWLINK, 4, None),                   # no name: unchanged
        _link_message(ifnames.RTM_DELLINK, 4, "veth1", family=7),      # left a bridge only
    ]
    for m in msgs:
        cache._apply(struct.unpack_from("=H", m, 4)[0], m, 0, len(m))
    assert cache.names == {0: "", 3: "wan0", 4: "veth1"}
    m = _link_message(ifnames.RTM_DELLINK, 4, "veth1")
    cache._apply(ifnames.RTM_DELLINK, m, 0, len(m))
    assert cache.names == {0: "", 3: "wan0"}


def test_refresh_reads_the_same_table_as_libc() -> None:
    """The dump (read-only, this process's namespace) agrees with if_nameindex()."""
    cache = ifnames.InterfaceNames()
    cache.open(None)
    try:
        assert cache.names == {0: "", **dict(socket.if_nameindex())}
        dumps = cache.dumps
        cache.last_dump -= ifnames.RESYNC_INTERVAL  # as if the start-up dump were old
        assert cache.resolve(0x7FFFFFF0) is None          # unknown: one resync dump
        assert cache.dumps == dumps + 1
        assert cache.resolve(0x7FFFFFF1) is None          # and not again within a second
        assert cache.dumps == dumps + 1
    finally:
        cache.close()


class _FakeSocket:
    """recv() raises the given errors in turn, then reports nothing queued."""

    def __init__(self, *errors: int) -> None:
        self.errors = list(errors)

    def recv(self, size: int) -> bytes:
        if self.errors:
            raise OSError(self.errors.pop(0), "fake")
        raise BlockingIOError


def test_lost_notifications_reload_the_table_and_errors_do_not_escape(monkeypatch) -> None:
    cache = ifnames.InterfaceNames({5: "stale"})
    reloads = []
    monkeypatch.setattr(cache, "refresh", lambda: reloads.append(1))
    cache.sock = _FakeSocket(errno.ENOBUFS)
    cache.on_readable()
    assert reloads == [1] and cache.overruns == 1
    cache.sock = _FakeSocket(errno.EIO)
    cache.on_readable()  # logged and counted, never raised into the event loop
    assert cache.errors == 1 and reloads == [1]
