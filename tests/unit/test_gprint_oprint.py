"""GPRINT and OPRINT against what ulogd 2.0.8 wrote for the same packets.

The golden files (`tests/fixtures/unixsock/`, see its README) are ulogd's
output for 14 hand-made packets.  The records given to our outputs here are
rebuilt from ulogd's own JSON of the same packets (`json_utc.log`, which
holds every key BASE and IP2STR gave, under CIM names where JSON uses them)
plus what JSON leaves out: the binary addresses, `raw.pkt`, IP2BIN's
strings, IP2HBIN's host-order addresses and the ICMP gateway (from
`send_unixsock.py`'s packet).  The stacks are built from the golden
configuration, so the key order, duplicates included, is the stack
builder's.  The end-to-end run through UNIXSOCK is tests/golden/.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.outputs import Delivered
from ulogpy.config.errors import ConfigError
from ulogpy.config.load import load_config
from ulogpy.config.model import options_model
from ulogpy.core.keys import Key, KeyType
from ulogpy.core.plugin import PluginError
from ulogpy.core.registry import registry
from ulogpy.core.stack import build_pipeline

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "unixsock"
GPRINT_STACK = "uc:UNIXSOCK,base1:BASE,ip2str1:IP2STR,ip2bin1:IP2BIN,ip2hbin1:IP2HBIN,gp1:GPRINT"
OPRINT_STACK = "ud:UNIXSOCK,base1:BASE,op1:OPRINT"
#: JSON's CIM names back to key names; ports by transport protocol.
CIM = {"src_ip": "ip.saddr.str", "dest_ip": "ip.daddr.str"}
PORTS = {"src_port": "sport", "dest_port": "dport"}
L4 = {6: "tcp", 17: "udp", 132: "sctp"}
#: send_unixsock.py's redirect packet names this gateway.
REDIRECT_GATEWAY = "192.168.1.254"


def golden(name: str) -> list[str]:
    return (FIX / name).read_text().split("\n")[:-1]


def records() -> list[dict]:
    """One record per golden packet, as BASE, IP2STR, IP2BIN and IP2HBIN leave it."""
    out = []
    for line in golden("json_utc.log"):
        obj = json.loads(line)
        rec: dict = {}
        for name, value in obj.items():
            if name in ("timestamp", "dvc"):
                continue
            if name in CIM:
                rec[CIM[name]] = value
            elif name in PORTS:
                rec[f"{L4[obj['ip.protocol']]}.{PORTS[name]}"] = value
            else:
                rec[name] = value
        family = socket.AF_INET6 if rec["oob.family"] == 10 else socket.AF_INET
        rec["raw.pkt"] = b"\x45\x10"  # present (OPRINT shows `default`), never printed as is
        for side in ("s", "d"):
            addr = socket.inet_pton(family, rec[f"ip.{side}addr.str"])
            rec[f"ip.{side}addr"] = addr
            rec[f"ip.{side}addr.bin"] = "0x" + addr.hex()  # IP2BIN: rawstr, skipped
            # IP2HBIN: the host-order u32's bytes (reversed) for IPv4, the address for IPv6
            rec[f"ip.h{side}addr"] = addr[::-1] if family == socket.AF_INET else addr
        if rec["oob.prefix"] == "PFX:icmp-redirect":  # BASE keeps it host-order (spec B2)
            rec["icmp.gateway"] = socket.inet_aton(REDIRECT_GATEWAY)[::-1]
        out.append(rec)
    return out


def output_of(tmp_path: Path, stack: str, section: str, opts: str = ""):
    """The output instance of `stack`, configured from a ulogd.conf, not started."""
    conf = tmp_path / "ulogd.conf"
    out_id = stack.rsplit(",", 1)[1].split(":")[0]
    conf.write_text(f'[global]\nstack={stack}\n[{out_id}]\nfile="{tmp_path / section}"\n'
                    f"sync=1\n{opts}")
    return build_pipeline(load_config(str(conf))).stacks[0].output


def write_all(out, recs: list[dict]) -> list[str]:
    out = Delivered(out)
    out.start()
    try:
        for rec in recs:
            out.write(rec)
            out.flush()
    finally:
        out.stop()
    return Path(out.transport.path).read_text().split("\n")[:-1]


def local_stamps(t0: float, t1: float) -> set[str]:
    return {time.strftime("%Y/%m/%d-%H:%M:%S", time.localtime(s))
            for s in range(int(t0), int(t1) + 1)}


HBIN = re.compile(r"\b(ip\.h[sd]addr)=[^,]*")


def test_gprint_writes_ulogds_lines(tmp_path: Path) -> None:
    gp = output_of(tmp_path, GPRINT_STACK, "gprint.log", "timestamp=1\n")
    t0 = time.time()
    got = write_all(gp, records())
    t1 = time.time()
    want = golden("gprint.log")
    assert len(got) == len(want) == 14
    for ours, theirs in zip(got, want, strict=True):
        stamp, _, ours_rest = ours.partition(",")
        assert stamp.removeprefix("timestamp=") in local_stamps(t0, t1)  # the current time
        theirs_rest = theirs.partition(",")[2]
        if ",oob.family=10," in theirs:  # ulogd's IP2HBIN gave a pointer there (spec B6)
            ours_rest, theirs_rest = HBIN.sub("", ours_rest), HBIN.sub("", theirs_rest)
        assert ours_rest == theirs_rest
    # the name BASE and UNIXSOCK both give is printed twice, as ulogd prints it
    assert got[0].count(",oob.protocol=0,") == 2


def test_oprint_writes_ulogds_dump(tmp_path: Path) -> None:
    op = output_of(tmp_path, OPRINT_STACK, "oprint.log")
    got = write_all(op, records())
    assert got == golden("oprint.log")


def test_ipv6_text_prints_whole_ipv6_addresses_and_leaves_ipv4_alone(tmp_path: Path) -> None:
    recs = records()
    gp = output_of(tmp_path, GPRINT_STACK, "gprint.log", "ipv6_text=1\n")
    lines = write_all(gp, recs)
    assert "ip.saddr=2001:db8::1,ip.daddr=2001:db8::2," in lines[-1]
    assert ",ip.hsaddr=2001:db8::1,ip.hdaddr=2001:db8::2" in lines[-1]
    ipv4 = golden("gprint.log")[0].partition(",")[2]  # IPv4 exactly as ulogd (no timestamp)
    assert lines[0] == ipv4
    op = output_of(tmp_path, OPRINT_STACK, "oprint.log", "ipv6_text=1\n")
    dump = write_all(op, recs)
    assert dump.count("ip.saddr=2001:db8::1") == 3 and dump.count("ip.daddr=2001:db8::2") == 3
    assert dump.count("ip.saddr=10.1.168.192") == 11  # IPv4 still reversed, as on x86


# -- types no golden packet has -------------------------------------------------------


def _direct(cls_name: str, tmp_path: Path, key_list: list[Key], **opts):
    cls = registry()[cls_name]
    cfg = options_model(cls)(file=str(tmp_path / f"{cls_name}.log"), **opts)
    out = cls("o1", cfg)
    out.stack_keys = key_list
    out.configure()
    return out


ODD_KEYS = [
    Key("t.i8", KeyType.INT8), Key("t.i32", KeyType.INT32), Key("t.i64", KeyType.INT64),
    Key("t.u64", KeyType.UINT64), Key("t.bool", KeyType.BOOL), Key("t.none", KeyType.NONE),
    Key("t.raw", KeyType.RAW), Key("t.rawstr", KeyType.RAWSTR), Key("t.str", KeyType.STRING),
    Key("t.absent", KeyType.UINT32),
]
ODD_RECORD = {"t.i8": -5, "t.i32": -2_000_000_000, "t.i64": -7, "t.u64": 2**64 - 1,
              "t.bool": 1, "t.none": 0, "t.raw": b"\x01", "t.rawstr": "x'01'",
              "t.str": "a b=c"}


def test_gprint_prints_ulogds_formats_and_skips_what_it_has_none_for(tmp_path: Path) -> None:
    # ulogd 2.0.8's GPRINT formats are %d, %u, %lu and the dotted quad: int64, none, raw
    # and rawstr have none and are left out; strings are printed raw.
    gp = _direct("GPRINT", tmp_path, ODD_KEYS)
    assert write_all(gp, [ODD_RECORD, {}]) == [
        "t.i8=-5,t.i32=-2000000000,t.u64=18446744073709551615,t.bool=1,t.str=a b=c",
        "",  # nothing valid: ulogd writes an empty line
    ]


def test_oprint_prints_none_and_default_as_ulogd(tmp_path: Path) -> None:
    op = _direct("OPRINT", tmp_path, ODD_KEYS)
    assert write_all(op, [ODD_RECORD, {}]) == [
        "===>PACKET BOUNDARY", "t.i8=-5", "t.i32=-2000000000", "t.i64=default",
        "t.u64=18446744073709551615", "t.bool=1", "t.none=<none>", "t.raw=default",
        "t.rawstr=default", "t.str=a b=c",
        "===>PACKET BOUNDARY",
    ]


# -- files: SIGHUP, open failures, sections --------------------------------------------


@pytest.mark.parametrize(("name", "notice"), [
    ("GPRINT", "GPRINT: reopening logfile"),
    ("OPRINT", "OPRINT: reopening logfile"),
    ("JSON", "JSON: reopening logfile"),
])
def test_sighup_reopens_with_ulogds_notice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str, notice: str
) -> None:
    out = Delivered(_direct(name, tmp_path, [Key("t.str", KeyType.STRING)], sync=1))
    out.start()
    path = Path(out.transport.path)
    out.write({"t.str": "before"})
    out.flush()
    path.rename(tmp_path / "rotated")
    with caplog.at_level(logging.INFO, logger="ulogpy"):
        out.signal(signal.SIGHUP)  # (the writer's thread reopens, after "before")
        out.write({"t.str": "after"})
        out.stop()
    assert "before" in (tmp_path / "rotated").read_text()
    assert "after" in path.read_text() and "before" not in path.read_text()
    assert [r.getMessage() for r in caplog.records if "reopening" in r.getMessage()] == [notice]
    assert all(r.levelno == 25 for r in caplog.records if "reopening" in r.getMessage())


@pytest.mark.parametrize(("name", "words"), [
    ("GPRINT", "can't open GPRINT log file"), ("OPRINT", "can't open PKTLOG"),
])
def test_open_failure_names_the_file_as_ulogd(tmp_path: Path, name: str, words: str) -> None:
    (tmp_path / "plainfile").write_text("")
    cls = registry()[name]
    out = cls("o1", options_model(cls)(file=str(tmp_path / "plainfile" / "x.log")))
    out.configure()
    with pytest.raises(PluginError) as err:
        Delivered(out).start()
    assert words in str(err.value) and "plainfile/x.log" in str(err.value)


@pytest.mark.parametrize("name", ["GPRINT", "OPRINT"])
def test_section_required(tmp_path: Path, name: str) -> None:
    conf = tmp_path / "ulogd.conf"
    conf.write_text(f"[global]\nstack=ct1:NFCT,o1:{name}\n[ct1]\n")
    with pytest.raises(ConfigError) as err:
        build_pipeline(load_config(str(conf)))
    assert "section [o1] not found" in str(err.value)
