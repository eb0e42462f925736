"""Every stack of Debian's own /etc/ulogd.conf (ulogd2 2.0.8), enabled alone.

An admin who switches keeps that file.  Each stack line in it, commented out or
not, is enabled on its own (every other one commented out) and must pass
`ulogpy --check` and then run: the daemon starts in a private namespace, reaches
its main loop and exits 0 on SIGTERM.  The file's paths under /var/log/ulog and
/tmp are moved into the test's directory, and its own log (`logfile="syslog"`)
too.  ULOG is the one refusal (the kernel
has no ULOG target since 3.17).  SYSLOG stacks are only checked, not run: a
running SYSLOG output would reach for the host's /dev/log.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.netns import Netns, live_skip_reason
from tests.ulogd_ref import ULOGPY, UlogdProcess

DEBIAN_CONF = Path("/etc/ulogd.conf")
STACK_RX = re.compile(r"(?m)^#?stack=(.+)$")


def _default_paths() -> set[Path]:
    """What the default paths hold (ulogd's files, ulogpy's spool): an output that
    fell back to one writes there."""
    log, spool = Path("/var/log"), Path("/var/lib/ulogpy/spool")
    found = set(log.glob("ulog*"))
    for directory in (log / "ulog", spool):
        if directory.is_dir():
            found |= set(directory.iterdir())
    return found


def _stacks() -> list[str]:
    if not DEBIAN_CONF.exists():
        return []
    return STACK_RX.findall(DEBIAN_CONF.read_text())


def _alone(stack: str, directory: Path) -> str:
    """Debian's file with only `stack` enabled and every path it writes inside
    `directory` (the test checks that no output fell back to a default path)."""
    text = re.sub(r"(?m)^stack=", "#stack=", DEBIAN_CONF.read_text())
    text = text.replace(f"#stack={stack}\n", f"stack={stack}\n", 1)
    # PCAP, JSON and NACCT have their file commented out (their defaults are in
    # /var/log): the commented path under /var/log/ulog is used, moved below.
    text = re.sub(r'(?m)^#(\s*file\s*=\s*"?/var/log/ulog/)', r"\1", text)
    text = re.sub(r"/var/log/ulog(?=[\"/\s]|$)", str(directory), text)
    text = re.sub(r'(?m)^logfile=.*$', f'logfile="{directory}/ulogd.log"', text)  # not syslog
    output = stack.rsplit(",", 1)[1].split(":")[0]  # its spool too (databases spool)
    text = text.replace(f"[{output}]\n", f'[{output}]\nspool_dir="{directory}/spool"\n', 1)
    return text.replace("/tmp/", f"{directory}/")


@pytest.fixture(scope="module")
def ns():
    reason = live_skip_reason()
    if reason:
        pytest.skip(reason)
    with Netns("debstk") as netns:
        netns.ip("link", "set", "lo", "up")
        yield netns


def test_the_file_has_the_stacks_we_expect() -> None:
    if not DEBIAN_CONF.exists():
        pytest.skip("no /etc/ulogd.conf (Debian package ulogd2)")
    plugins = {p.split(":")[1] for s in _stacks() for p in s.split(",")}
    assert {"XML", "SYSLOG", "PCAP", "NACCT", "GRAPHITE", "NFACCT", "MYSQL", "ULOG"} <= plugins


@pytest.mark.parametrize("stack", _stacks() or ["(no /etc/ulogd.conf)"])
def test_debian_stack_alone_checks_and_runs(ns: Netns, tmp_path: Path, stack: str) -> None:
    if not DEBIAN_CONF.exists():
        pytest.skip("no /etc/ulogd.conf (Debian package ulogd2)")
    conf = tmp_path / "ulogd.conf"
    conf.write_text(_alone(stack, tmp_path))
    check = subprocess.run([ULOGPY, "--check", "-c", str(conf)], capture_output=True,
                           text=True, timeout=60, check=False)
    if ":ULOG" in stack:
        assert check.returncode == 1, check.stdout + check.stderr
        assert "NFLOG" in check.stderr and "Traceback" not in check.stderr
        return
    assert check.returncode == 0, check.stdout + check.stderr
    assert "OK, 1 stack(s)" in check.stdout
    if ":SYSLOG" in stack:
        return
    before = _default_paths()
    daemon = UlogdProcess(ns, conf.read_text(), tmp_path / "run", binary=ULOGPY)
    with daemon:
        assert daemon.running()
        code = daemon.stop(timeout=20)
    assert code == 0, daemon.output_text() + daemon.log_text()
    assert "Traceback" not in daemon.output_text() + daemon.log_text()
    assert _default_paths() == before, "an output wrote outside the test's directory"
