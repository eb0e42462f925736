"""A stalled output must not make the kernel drop events for the others.

Two LOGEMU outputs write into named pipes that the test holds open but does
not read, so their writes block once the pipe buffer is full, like a stalled
disk.  One drops its oldest records when its queue is full, the other spools
them to disk.  A JSON output on the same conntrack events writes to a plain
file.  The burst of events must reach the JSON file completely, with no
overrun of the kernel socket; the dropping output must count what it lost;
once the test starts reading the spooling output's pipe, every record comes
out, in order.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import threading
from pathlib import Path

import pytest

from tests.netns import Netns, wait_until
from tests.ulogd_ref import ULOGPY, UlogdProcess, read_lines

pytestmark = [pytest.mark.live]

FLOWS = 1500
CONF = """\
[global]
loglevel=5
stack=ct1:NFCT,ip2str1:IP2STR,print1:PRINTFLOW,drop1:LOGEMU
stack=ct1:NFCT,ip2str1:IP2STR,print1:PRINTFLOW,spool1:LOGEMU
stack=ct1:NFCT,ip2str1:IP2STR,json1:JSON
[ct1]
hash_enable=0
event_mask=5
netlink_socket_buffer_size=16777216
[drop1]
file="{d}/drop.pipe"
queue_size=100
queue_policy=drop-oldest
[spool1]
file="{d}/spool.pipe"
sync=1
queue_size=100
queue_policy=spool
spool_dir="{d}/spool"
[json1]
file="{d}/flows.json"
"""
GENERATOR = """
import socket, sys
for i in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"x", ("127.0.0.1", 20000 + i))
    s.close()
"""


def _counters(log_text: str, instance: str) -> dict[str, int]:
    found = re.findall(rf"counters {re.escape(instance)}: (.*)", log_text)
    assert found, f"no counters for {instance} in the log:\n{log_text}"
    return {k: int(v) for k, v in (item.split("=") for item in found[-1].split())}


def test_stalled_outputs_do_not_cost_the_others_events(tmp_path: Path) -> None:
    for name in ("drop.pipe", "spool.pipe"):
        os.mkfifo(tmp_path / name)
    # Read ends held open (so the daemon's open() does not wait) but not read yet.
    readers = {name: os.open(tmp_path / name, os.O_RDONLY | os.O_NONBLOCK)
               for name in ("drop.pipe", "spool.pipe")}
    # The smallest pipe (one page) holds a few lines, so the dropping output really stalls
    # instead of writing its whole queue into the pipe's default 64 KiB.
    fcntl.fcntl(readers["drop.pipe"], fcntl.F_SETPIPE_SZ, 4096)
    with Netns("outq") as ns:
        ns.ip("link", "set", "lo", "up")
        ns.nft("table inet t {\n chain out {\n type filter hook output priority 0;\n"
               " ct state new counter\n }\n}\n")
        daemon = UlogdProcess(ns, CONF.format(d=tmp_path), tmp_path / "run", binary=ULOGPY)
        with daemon:
            ns.run(["python3", "-c", GENERATOR, str(FLOWS)])
            ns.run(["conntrack", "-F"])
            expected = 2 * FLOWS
            wait_until(lambda: len(read_lines(tmp_path / "flows.json")) >= expected,
                       timeout=20, what=f"{expected} JSON records despite the stalled outputs")
            wait_until(lambda: any((tmp_path / "spool" / "spool1").glob("*.spool")), timeout=5,
                       what="the spool file")

            # Unstall the spooling output: read its pipe until every line came out.
            lines: list[bytes] = []
            done = threading.Event()

            def drain() -> None:
                fd = readers["spool.pipe"]
                os.set_blocking(fd, True)
                buf = b""
                while len(lines) < expected:
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        break
                    buf += chunk
                    *complete, buf = buf.split(b"\n")
                    lines.extend(complete)
                done.set()

            threading.Thread(target=drain, daemon=True).start()
            assert done.wait(30), f"only {len(lines)} of {expected} spooled lines came out"
            assert daemon.stop(timeout=20) == 0
        log_text = daemon.log_text()
        spool_counters = _counters(log_text, "spool1:LOGEMU")

    records = [json.loads(ln) for ln in read_lines(tmp_path / "flows.json")]
    assert len(records) == expected
    nfct = _counters(log_text, "ct1:NFCT")
    assert nfct.get("overruns", 0) == 0 and nfct["emitted"] == expected

    # The spooling output: everything, in the kernel's order (all NEWs, then all DESTROYs).
    events = [b" [NEW] " in ln for ln in lines]
    assert len(lines) == expected and events == [True] * FLOWS + [False] * FLOWS
    assert spool_counters["spooled"] > 0 and spool_counters.get("dropped", 0) == 0
    assert spool_counters["replayed"] == spool_counters["spooled"]

    # The dropping output: its losses are counted, and it says so; nothing is unaccounted.
    drop = _counters(log_text, "drop1:LOGEMU")
    assert drop["dropped"] > 0
    assert drop["dropped"] + drop.get("written", 0) == expected
    assert "output too slow, dropping records" in log_text
    assert "drop1:LOGEMU: output stalled at exit" in log_text
    for fd in readers.values():
        os.close(fd)
