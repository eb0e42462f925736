"""ULOG through the command line: described as ulogd describes it, refused at load.

The kernel's ULOG target is gone since Linux 3.17 (ulogd 2.0.8 itself fails at start:
"Can't create ULOG handle").  A stack using it must be refused by `--check` and at
start, with exit status 1, the stack's line, and the NFLOG stack that replaces it; that
suggested stack, with the section changed as the message says, must pass `--check`."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.ulogd_ref import ULOGPY

INTROSPECT = Path(__file__).resolve().parents[1] / "fixtures" / "introspect"
DEBIAN_CONF = Path("/etc/ulogd.conf")
SUGGESTED = re.compile(r"use the stack '([^']+)' with \[(\w+)\] group=(\d+)")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ULOGPY, *args], capture_output=True, text=True, timeout=30)


def test_info_is_ulogds() -> None:
    proc = run_cli("-i", "ULOG")
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout == (INTROSPECT / "ULOG.txt").read_text()
    so = run_cli("-i", "/usr/lib/x86_64-linux-gnu/ulogd/ulogd_inppkt_ULOG.so")
    assert so.returncode == 0 and so.stdout == proc.stdout


CONF = """\
[global]
logfile="{d}/ulogpy.log"
# packets of the old ULOG rules
stack=ulog1:ULOG,base1:BASE,ip2str1:IP2STR,print1:PRINTPKT,emu1:LOGEMU
stack=ct1:NFCT,ip2str1:IP2STR,print2:PRINTFLOW,emu2:LOGEMU
[ulog1]
nlgroup=5
rmem=262144
[ct1]
[emu1]
file="{d}/packets.log"
[emu2]
file="{d}/flows.log"
"""


def _refused(conf: Path) -> str:
    outputs = []
    for args in (("--check", "-c", str(conf)), ("-c", str(conf))):
        proc = run_cli(*args)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert proc.stderr.startswith("ulogpy: ") and proc.stderr.count("\n") == 1
        outputs.append(proc.stderr)
    assert outputs[0] == outputs[1]
    return outputs[0]


def test_stack_with_ulog_is_refused_naming_the_line_and_nflog(tmp_path: Path) -> None:
    conf = tmp_path / "ulogd.conf"
    conf.write_text(CONF.format(d=tmp_path))
    message = _refused(conf)
    assert f"{conf}:4: [global] stack: " in message
    assert "ulog1:ULOG" in message and "Linux 3.17" in message
    assert "-j NFLOG --nflog-group 5" in message and "log group 5" in message
    assert ("'ulog1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,print1:PRINTPKT,emu1:LOGEMU'"
            in message)
    assert "rmem= becomes netlink_socket_buffer_size=" in message
    assert not (tmp_path / "packets.log").exists() and not (tmp_path / "flows.log").exists()


def test_suggested_stack_passes_check(tmp_path: Path) -> None:
    conf = tmp_path / "ulogd.conf"
    text = CONF.format(d=tmp_path)
    conf.write_text(text)
    found = SUGGESTED.search(_refused(conf))
    assert found, "no suggested stack"
    stack, section, group = found.groups()
    text = text.replace("ulog1:ULOG,base1:BASE,ip2str1:IP2STR,print1:PRINTPKT,emu1:LOGEMU",
                        stack)
    text = text.replace("nlgroup=5", f"group={group}").replace(
        "rmem=", "netlink_socket_buffer_size=")
    assert f"[{section}]" in text
    conf.write_text(text)
    proc = run_cli("--check", "-c", str(conf))
    assert proc.returncode == 0, proc.stderr


def test_ifindex_is_not_added_twice_and_default_group(tmp_path: Path) -> None:
    conf = tmp_path / "ulogd.conf"
    conf.write_text(f"[global]\nstack=u:ULOG,ifi1:IFINDEX,json1:JSON\n[u]\n"
                    f"[json1]\nfile=\"{tmp_path}/x.json\"\n")
    message = _refused(conf)
    assert f"{conf}:2: " in message
    assert "'u:NFLOG,ifi1:IFINDEX,json1:JSON' with [u] group=32" in message


def test_refused_even_without_its_section(tmp_path: Path) -> None:
    """The refusal comes first: no "section [ulog1] not found" to fix before learning
    that ULOG is gone."""
    conf = tmp_path / "ulogd.conf"
    conf.write_text(f"[global]\nstack=ulog1:ULOG,json1:JSON\n[json1]\nfile=\"{tmp_path}/x\"\n")
    message = _refused(conf)
    assert "NFLOG" in message and "not found" not in message


@pytest.mark.skipif(not DEBIAN_CONF.exists(), reason="no /etc/ulogd.conf (package ulogd2)")
def test_debian_ulog_stack_alone_is_refused(tmp_path: Path) -> None:
    text = re.sub(r"^stack=", "#stack=", DEBIAN_CONF.read_text(), flags=re.M)
    line = "stack=ulog1:ULOG,base1:BASE,ip2str1:IP2STR,print1:PRINTPKT,emu1:LOGEMU"
    assert "#" + line in text
    text = text.replace("#" + line, line)
    text = text.replace('logfile="syslog"', f'logfile="{tmp_path}/ulogpy.log"')  # not /dev/log
    conf = tmp_path / "ulogd.conf"
    conf.write_text(text)
    number = text.splitlines().index(line) + 1
    message = _refused(conf)
    assert f"{conf}:{number}: " in message and "ulog1:NFLOG,base1:BASE,ifi1:IFINDEX" in message
