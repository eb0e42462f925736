"""NACCT without a kernel: lines from recorded conntrack DESTROY events, a full disk,
the configuration.  The byte-for-byte comparison with ulogd on live traffic is
tests/live/test_xml_nacct.py."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from ulogpy.plugins.filter.ip2str import IP2STR

from tests.fixtures.recorded import load_records
from tests.outputs import Delivered
from ulogpy.config.errors import ConfigError
from ulogpy.config.load import load_config
from ulogpy.core.plugin import PluginError
from ulogpy.core.stack import build_pipeline
from ulogpy.netlink import conntrack as ct

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "conntrack"
STACK = "ct1:NFCT,ip2str1:IP2STR,nacct1:NACCT"


def _pipeline(tmp_path: Path, file: str):
    conf = tmp_path / "ulogd.conf"
    conf.write_text(f'[global]\nstack={STACK}\n[ct1]\n[nacct1]\nfile="{file}"\nsync=1\n')
    return build_pipeline(load_config(str(conf))).stacks[0]


def _destroy_records(stack) -> list[dict]:
    ip2str = next(f for f in stack.filters if isinstance(f, IP2STR))
    out = []
    for rec in load_records(FIXTURES):
        event = ct.decode_ct(rec["data"])
        if event is None or event.event != ct.EVENT_DESTROY:
            continue
        record = event.values
        record["flow.end.sec"] = event.stop_ns // 1_000_000_000
        ip2str.interp(record)
        out.append(record)
    return out


def test_lines_carry_end_proto_addresses_ports_and_reply_counters(tmp_path: Path) -> None:
    stack = _pipeline(tmp_path, str(tmp_path / "nacct.log"))
    records = _destroy_records(stack)
    out = Delivered(stack.output)
    out.start()
    for record in records:
        out.write(record)
    out.stop()
    lines = (tmp_path / "nacct.log").read_text().splitlines()
    assert len(lines) == len(records) >= 10
    for line, record in zip(lines, records, strict=True):
        fields = line.split("\t")
        assert len(fields) == 8
        end, proto, src, first, dst, second, packets, octets = fields
        assert end == str(record["flow.end.sec"]) and proto == str(record["orig.ip.protocol"])
        assert (src, dst) == (record["orig.ip.saddr.str"], record["orig.ip.daddr.str"])
        if proto == "1":
            assert (first, second) == (str(record["icmp.type"]), str(record["icmp.code"]))
        else:
            assert first == str(record.get("orig.l4.sport", 0))
            assert second == str(record.get("orig.l4.dport", 0))
        assert (packets, octets) == (str(record["reply.raw.pktcount"]),
                                     str(record["reply.raw.pktlen"]))
    assert any(line.split("\t")[1] == "1" and line.split("\t")[3] == "8" for line in lines)


def test_full_disk_is_counted_and_the_lines_kept(tmp_path: Path) -> None:
    """/dev/full takes the open and refuses every write: nothing is written, each attempt
    is counted, and the lines wait in the queue (left as dropped at exit)."""
    stack = _pipeline(tmp_path, "/dev/full")
    records = _destroy_records(stack)[:5]
    out = Delivered(stack.output)
    out.start()
    for record in records:
        out.write(record)
    out.flush()
    deadline = time.monotonic() + 5
    while out.counters.get("write_errors") == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    out.stop()
    assert out.counters.get("write_errors") >= 1
    assert out.counters.get("written") == 0
    assert out.counters.get("dropped") + out.counters.get("spooled") == len(records)


def test_open_failure_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "plainfile").write_text("")
    stack = _pipeline(tmp_path, str(tmp_path / "plainfile" / "nacct.log"))
    with pytest.raises(PluginError) as err:
        Delivered(stack.output).start()
    assert re.search(r"^NACCT: /\S+/plainfile/nacct\.log: \w", str(err.value))


def test_section_required(tmp_path: Path) -> None:
    conf = tmp_path / "ulogd.conf"
    conf.write_text(f"[global]\nstack={STACK}\n[ct1]\n")
    with pytest.raises(ConfigError) as err:
        build_pipeline(load_config(str(conf)))
    assert "[nacct1]" in str(err.value)
