"""NFACCT without a kernel: the nfnetlink_acct codec, the refused configurations, and the
NFACCT stacks of Debian's /etc/ulogd.conf through `ulogpy --check`.

The live test (tests/live/test_nfacct.py) compares what the real kernel answers, as
ulogpy and ulogd report it."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest

from tests.ulogd_ref import ULOGPY
from ulogpy.netlink import acct
from ulogpy.netlink.attrs import MalformedMessage, attr
from ulogpy.netlink.nlsock import NLMSGHDR, iter_messages

DEBIAN_CONF = Path("/etc/ulogd.conf")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ULOGPY, *args], capture_output=True, text=True, timeout=30)


# -- codec --------------------------------------------------------------------------------

@pytest.mark.parametrize(("zero", "subtype"), [(False, 1), (True, 2)])
def test_request_is_a_dump_of_the_acct_subsystem(zero: bool, subtype: int) -> None:
    request = acct.build_get_request(1234, zero_counters=zero)
    length, mtype, flags, seq, pid = NLMSGHDR.unpack_from(request)
    assert (length, len(request)) == (20, 20)
    assert mtype == (7 << 8) | subtype  # NFNL_SUBSYS_ACCT, GET or GET_CTRZERO
    assert flags == 0x301  # NLM_F_REQUEST | NLM_F_DUMP
    assert (seq, pid) == (1234, 0)
    assert request[16:] == bytes(4)  # AF_UNSPEC, version 0, res_id 0


def _message(body: bytes, mtype: int = (7 << 8)) -> bytes:
    return NLMSGHDR.pack(20 + len(body), mtype, 2, 1, 0) + bytes(4) + body


def test_object_decodes_to_the_sum_keys() -> None:
    body = (attr(1, b"web-in\0") + attr(2, struct.pack(">Q", 2**40 + 3))
            + attr(3, struct.pack(">Q", 2**63 + 5)) + attr(4, struct.pack(">I", 2))
            + attr(5, struct.pack(">I", 1)) + attr(6, struct.pack(">Q", 1000)))
    found = acct.decode_acct(_message(body))
    assert found == acct.AcctObject("web-in", 2**40 + 3, 2**63 + 5, 2, 1, 1000)
    assert found.values() == {"sum.name": "web-in", "sum.pkts": 2**40 + 3,
                              "sum.bytes": 2**63 + 5}


def test_several_objects_in_one_datagram_and_an_offset() -> None:
    data = acct.build_object_message("a", 1, 84) + acct.build_object_message("bb", 2, 168)
    names = [acct.decode_acct(data, off, mlen).name for off, mlen, *_ in iter_messages(data)]
    assert names == ["a", "bb"]


def test_name_that_is_no_utf8_stays_visible() -> None:
    body = attr(1, b"x\xff\0") + attr(2, bytes(8)) + attr(3, bytes(8))
    assert acct.decode_acct(_message(body)).name == "x\\xff"


@pytest.mark.parametrize("mtype", [(1 << 8), (7 << 8) | 4, 3, 2])
def test_other_messages_are_not_objects(mtype: int) -> None:
    body = attr(1, b"a\0") + attr(2, bytes(8)) + attr(3, bytes(8))
    assert acct.decode_acct(_message(body, mtype)) is None


@pytest.mark.parametrize("body", [
    attr(2, bytes(8)) + attr(3, bytes(8)),                    # no name
    attr(1, b"\0") + attr(2, bytes(8)) + attr(3, bytes(8)),   # empty name
    attr(1, b"a\0") + attr(3, bytes(8)),                      # no packet counter
    attr(1, b"a\0") + attr(2, bytes(4)) + attr(3, bytes(8)),  # short counter
    attr(1, b"a\0") + b"\x40\x00\x02\x00",                    # attribute past the end
])
def test_broken_objects_are_malformed(body: bytes) -> None:
    with pytest.raises(MalformedMessage):
        acct.decode_acct(_message(body))


def test_truncated_message_is_malformed() -> None:
    data = acct.build_object_message("abc", 1, 2)
    for cut in (0, 10, 19):
        with pytest.raises(MalformedMessage):
            acct.decode_acct(data[:cut])
    with pytest.raises(MalformedMessage):  # nlmsg_len says more than there is
        acct.decode_acct(data[:-4])


# -- configuration ------------------------------------------------------------------------

@pytest.mark.parametrize("setting", ["", "pollinterval=0", "pollinterval=-5"])
def test_missing_or_zero_pollinterval_is_refused(setting: str, tmp_path: Path) -> None:
    conf = tmp_path / "ulogd.conf"
    conf.write_text("[global]\nstack=acct1:NFACCT,gp1:GPRINT\n"
                    f"[acct1]\n{setting}\n[gp1]\nfile=\"{tmp_path}/g.log\"\n")
    for args in (("--check", "-c", str(conf)), ("-c", str(conf))):
        proc = run_cli(*args)
        assert proc.returncode == 1, proc
        assert "Traceback" not in proc.stderr
        assert f"{conf}:3: [acct1] plugin NFACCT: option 'pollinterval'" in proc.stderr
        assert "greater than 0" in proc.stderr and "You have to set pollint" in proc.stderr
    assert not (tmp_path / "g.log").exists()


def test_section_is_required(tmp_path: Path) -> None:
    conf = tmp_path / "ulogd.conf"
    conf.write_text(f"[global]\nstack=acct1:NFACCT,gp1:GPRINT\n[gp1]\nfile=\"{tmp_path}/g\"\n")
    proc = run_cli("--check", "-c", str(conf))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "[acct1]" in proc.stderr and "pollinterval" in proc.stderr


def test_damaged_messages_raise_only_malformed() -> None:
    import random

    rng = random.Random(99)
    data = acct.build_object_message("objectname", 12345, 678910)
    for _ in range(5000):
        damaged = bytearray(data[:rng.randint(0, len(data))])
        for _ in range(rng.randint(0, 3)):
            if damaged:
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        try:
            acct.decode_acct(bytes(damaged))
        except MalformedMessage:
            pass
