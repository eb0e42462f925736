"""XML without a kernel: recorded conntrack messages against `conntrack -L`, the file's
life (name, header, closing tag, SIGHUP, a full disk), and the configuration.

The byte-for-byte comparison with ulogd on live traffic is tests/live/test_xml_nacct.py.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from ulogpy.plugins.output import xmltext

from tests.fixtures.recorded import load_records
from tests.outputs import Delivered
from ulogpy.config.errors import ConfigError
from ulogpy.config.load import load_config
from ulogpy.core.stack import build_pipeline

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "conntrack"
DEBIAN_CONF = Path("/etc/ulogd.conf")
NAME_RX = re.compile(r"^ulogd-(flow|pkt|sum)-\d{8}-\d{6}\.xml$")


def _dump_lines() -> dict[str, str]:
    """`conntrack -L` lines of the recorded dump, by conntrack id."""
    lines = (FIXTURES / "conntrack_L_dump.txt").read_text().splitlines()
    return {m.group(1): line for line in lines if (m := re.search(r" id=(\d+)", line))}


def test_dumped_flows_print_what_conntrack_lists() -> None:
    """Each field `conntrack -L` shows is in the element, in the printer's layout."""
    listed = _dump_lines()
    dumps = [r["data"] for r in load_records(FIXTURES) if r["phase"] == "dump"]
    seen = 0
    for message in dumps:
        for offset, length in _messages(message):
            text = xmltext.flow(message[offset:offset + length], now=0)
            ct_id = re.search(r"<id>(\d+)</id>", text).group(1)
            line = listed.get(ct_id)
            if line is None:  # a flow of another of the recorded dumps
                continue
            fields = dict(re.findall(r"(\w+)=(\S+)", line))  # the first of each name
            assert f"<src>{fields['src']}</src><dst>{fields['dst']}</dst>" in text
            if "sport" in fields:
                assert f"<sport>{fields['sport']}</sport><dport>{fields['dport']}</dport>" \
                    in text
            if "srckey" in fields:
                assert f"<srckey>{fields['srckey']}</srckey>" in text
            assert f"<counters><packets>{fields['packets']}</packets>" \
                   f"<bytes>{fields['bytes']}</bytes></counters>" in text
            assert f"<mark>{fields['mark']}</mark>" in text
            assert f"<use>{fields['use']}</use>" in text
            assert ("<zone>7</zone>" in text) == ("zone=7" in line)
            assert ("<assured/>" in text) == ("[ASSURED]" in line)
            assert ("<unreplied/>" in text) == ("[UNREPLIED]" in line)
            for state in ("TIME_WAIT", "ESTABLISHED", "SYN_SENT", "CLOSE"):
                if f" {state} " in line:
                    assert f"<state>{state}</state>" in text
            assert text.startswith("<flow><meta direction=\"original\"><layer3 protonum=")
            assert text.endswith("<year>1970</year></when></flow>")
            seen += 1
    assert seen >= 10


def _messages(data: bytes):
    pos = 0
    while pos + 16 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "little")
        if length < 16:
            return
        if int.from_bytes(data[pos + 4:pos + 6], "little") >> 8 == 1:  # ctnetlink
            yield pos, length
        pos += (length + 3) & ~3


def _xml(tmp_path: Path, stack: str, extra: str = "") -> object:
    conf = tmp_path / "ulogd.conf"
    out_id = stack.rsplit(",", 1)[1].split(":")[0]
    inp = stack.split(":")[0]
    poll = "pollinterval=1\n" if inp.startswith("acct") else ""
    conf.write_text(f"[global]\nstack={stack}\n[{inp}]\n{poll}[{out_id}]\n"
                    f'directory="{tmp_path / "xml"}"\nsync=1\n{extra}')
    return build_pipeline(load_config(str(conf))).stacks[0].output


@pytest.mark.parametrize(("stack", "infix", "root"), [
    ("ct1:NFCT,xml1:XML", "flow", "conntrack"),
    ("log1:NFLOG,xml1:XML", "pkt", "packet"),
    ("acct1:NFACCT,xml1:XML", "sum", "sum"),
])
def test_file_is_named_after_what_the_stack_carries(tmp_path: Path, stack: str, infix: str,
                                                    root: str) -> None:
    out = Delivered(_xml(tmp_path, stack))
    out.start()
    out.stop()
    (made,) = (tmp_path / "xml").iterdir()
    assert NAME_RX.match(made.name).group(1) == infix
    assert made.read_text() == f'<?xml version="1.0" encoding="utf-8"?>\n<{root}>\n</{root}>\n'


def _flow_message() -> bytes:
    return next(r["data"] for r in load_records(FIXTURES) if r["kind"] == "event")


def test_sighup_closes_the_document_and_starts_a_new_file(tmp_path: Path) -> None:
    out = Delivered(_xml(tmp_path, "ct1:NFCT,xml1:XML"))
    out.start()
    out.write({"ct": _flow_message()})
    out.flush()
    time.sleep(1.05)  # the next file's name is a second later
    out.signal(signal.SIGHUP)
    out.write({"ct": _flow_message()})
    out.stop()
    files = sorted((tmp_path / "xml").iterdir())
    assert len(files) == 2
    for f in files:
        lines = f.read_text().splitlines()
        assert lines[1] == "<conntrack>" and lines[-1] == "</conntrack>"
        assert len(lines) == 4 and lines[2].startswith("<flow>")


@pytest.fixture
def small_fs(tmp_path: Path):
    """A 64 KiB tmpfs on a private directory (mounted here, unmounted after)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_is_counted_and_the_same_document_resumes(tmp_path: Path, small_fs) -> None:
    conf = tmp_path / "ulogd.conf"
    conf.write_text(f"[global]\nstack=ct1:NFCT,xml1:XML\n[ct1]\n[xml1]\n"
                    f'directory="{small_fs}"\nsync=1\n')
    out = Delivered(build_pipeline(load_config(str(conf))).stacks[0].output)
    out.start()
    filler = small_fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:  # fill the disk to the last byte
        for size in (4096, 1):
            try:
                while True:
                    os.write(fd, b"x" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    records = 20
    for _ in range(records):
        out.write({"ct": _flow_message()})
    out.flush()
    deadline = time.monotonic() + 5
    while out.counters.get("write_errors") == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert out.counters.get("write_errors") >= 1
    filler.unlink()  # room again: the writer's retry puts the records in, in order
    deadline = time.monotonic() + 10
    while out.counters.get("written") < records and time.monotonic() < deadline:
        time.sleep(0.05)
    out.stop()
    assert out.counters.get("written") == records
    (doc,) = [p for p in small_fs.iterdir() if p.name.startswith("ulogd-")]
    lines = doc.read_text().splitlines()
    assert lines[:2] == ['<?xml version="1.0" encoding="utf-8"?>', "<conntrack>"]
    assert lines[-1] == "</conntrack>"
    flows = [ln for ln in lines if ln.startswith("<flow>")]
    # whole lines only; a line cut by the full disk is written again whole after it
    assert all(ln.endswith("</flow>") for ln in flows)
    assert len({WHEN.sub("", ln) for ln in flows}) == 1 and len(flows) >= records


WHEN = re.compile(r"<when>.*</when>")


def test_element_limit_rejects_a_negative_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        _xml(tmp_path, "ct1:NFCT,xml1:XML", "element_limit=-1\n")
    assert "element_limit" in str(err.value) and "positive" in str(err.value)


def test_section_required(tmp_path: Path) -> None:
    conf = tmp_path / "ulogd.conf"
    conf.write_text("[global]\nstack=ct1:NFCT,xml1:XML\n[ct1]\n")
    with pytest.raises(ConfigError) as err:
        build_pipeline(load_config(str(conf)))
    assert "[xml1]" in str(err.value)
