"""The shipped logrotate file, run for real while events keep coming.

A copy of dist/ulogpy.logrotate with its paths moved into the test's directory
(nothing else changed: the same postrotate, which signals through systemd when the
service runs under it and through the pidfile otherwise) is run with `logrotate -f`
several times while a steady stream of conntrack flows is logged to a text file
(LOGEMU, buffered) and a JSON file.  Afterwards every flow is in exactly one of the
files: the current one, the rotated one, or the compressed older ones.
"""

from __future__ import annotations

import gzip
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.live.test_systemd_notify import wait_until
from tests.netns import Netns
from tests.ulogd_ref import ULOGPY

pytestmark = pytest.mark.live

DIST = Path(__file__).resolve().parents[2] / "dist"
FLOWS = 300
FIRST_PORT = 31000
SENDER = (
    "import socket, time\n"
    f"for port in range({FIRST_PORT}, {FIRST_PORT + FLOWS}):\n"
    "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "    s.bind(('127.0.0.1', port))\n"
    "    s.sendto(b'x', ('127.0.0.1', 9))\n"
    "    s.close()\n"
    "    time.sleep(0.01)\n"
)
PATTERNS = {"flows.log": re.compile(r"SPT=(\d+) DPT=9 "),
            "flows.json": re.compile(r'"orig\.l4\.sport": (\d+),')}


def rotate_config(tmp: Path, logdir: Path, pidfile: Path) -> Path:
    text = (DIST / "ulogpy.logrotate").read_text()
    assert text.count("/var/log/ulogpy/") == 3 and "/run/ulogpy/ulogpy.pid" in text
    text = text.replace("/var/log/ulogpy/", f"{logdir}/")
    text = text.replace("/run/ulogpy/ulogpy.pid", str(pidfile))
    text = text.replace("create 0640 ulogpy adm", "create 0640 root root")  # no such user here
    conf = tmp / "logrotate.conf"
    conf.write_text(text)
    return conf


def all_text(logdir: Path, name: str) -> dict[str, str]:
    """The text of `name` and of each of its rotations, by file name."""
    texts = {}
    for path in sorted(logdir.glob(f"{name}*")):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as f:
            texts[path.name] = f.read()
    return texts


def reopened(pid: int, path: Path) -> bool:
    """The daemon has a descriptor on the file now at `path` (not on a rotated one)."""
    try:
        inode = path.stat().st_ino
    except FileNotFoundError:
        return False
    fds = Path(f"/proc/{pid}/fd")
    for fd in fds.iterdir():
        try:
            if os.stat(fd).st_ino == inode:
                return True
        except OSError:
            continue
    return False


def test_logrotate_while_logging_loses_and_repeats_nothing(live_ok, tmp_path: Path) -> None:
    logdir = tmp_path / "log"
    logdir.mkdir()
    pidfile = tmp_path / "ulogpy.pid"
    conf = tmp_path / "ulogpy.conf"
    conf.write_text(
        "[global]\n"
        f'logfile="{logdir}/ulogpy.log"\n'
        "stack=ct1:NFCT,ip2str1:IP2STR,print1:PRINTFLOW,emu1:LOGEMU\n"
        "stack=ct1:NFCT,ip2str1:IP2STR,json1:JSON\n"
        "[ct1]\nhash_enable=0\nevent_mask=1\n"
        f'[emu1]\nfile="{logdir}/flows.log"\nsync=0\n'
        f'[json1]\nfile="{logdir}/flows.json"\nsync=1\n'
    )
    rotate = rotate_config(tmp_path, logdir, pidfile)
    state = tmp_path / "logrotate.state"
    with Netns("lr") as ns:
        ns.nft("table inet t {\n chain out {\n  type filter hook output priority 0;\n"
               "  ct state new counter\n }\n}\n")
        proc = subprocess.Popen(["ip", "netns", "exec", ns.name, ULOGPY, "-c", str(conf),
                                 "-p", str(pidfile)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: (logdir / "ulogpy.log").exists()
                       and "initialization finished" in (logdir / "ulogpy.log").read_text(),
                       what="the daemon to start")
            sender = ns.popen([sys.executable, "-c", SENDER])
            rotations = 0
            # fewer rotations than the shipped `rotate 8` keeps, so nothing is deleted
            while (sender.poll() is None and rotations < 6) or rotations < 3:
                time.sleep(0.5)
                run = subprocess.run(["logrotate", "-f", "-s", str(state), str(rotate)],
                                     capture_output=True, text=True, timeout=30)
                assert run.returncode == 0, run.stderr
                rotations += 1
                for name in PATTERNS:
                    wait_until(lambda n=name: reopened(proc.pid, logdir / n),
                               what=f"the daemon to reopen {name}")
            assert sender.wait(timeout=30) == 0
            time.sleep(1.5)  # the last flows reach the files (LOGEMU waits up to 1 s)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=15)
            assert proc.returncode == 0, err
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)
    expected = Counter(range(FIRST_PORT, FIRST_PORT + FLOWS))
    for name, pattern in PATTERNS.items():
        texts = all_text(logdir, name)
        assert len(texts) >= 3, sorted(texts)  # current, .1 and at least one .N.gz
        assert any(n.endswith(".gz") for n in texts), sorted(texts)  # compress, delaycompress
        seen = Counter(int(p) for text in texts.values() for p in pattern.findall(text))
        assert seen == expected, (name, {p: n for p, n in (seen - expected).items()},
                                  sorted(expected - seen))
        assert sum(1 for text in texts.values() if pattern.search(text)) >= 3
    # the daemon's own log rotated with the rest and goes on in the new file
    assert "exiting" in (logdir / "ulogpy.log").read_text()
    assert "signal SIGHUP received" in (logdir / "ulogpy.log.1").read_text()
