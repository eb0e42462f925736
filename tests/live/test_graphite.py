"""GRAPHITE, live: the same lines as ulogd 2.0.8 for the same nfacct counters, and a real
carbon-cache that stores them, also across an outage.

* ulogd's NFACCT -> GRAPHITE polls kernel nfacct objects (counting ICMP in a private
  namespace) and sends to a listener of this test; ulogpy's GRAPHITE gets the sums the
  kernel reports for the same objects (its own NFACCT input when it is there, else
  `nfacct list`) and must send the same lines (the timestamp is each poll's clock).
* A carbon-cache started by the test (private config and storage, random loopback
  ports) receives ulogpy's metrics; they are read back from its whisper files
  (`whisper-fetch`).  Carbon then stops: what arrives meanwhile waits in the queue
  (the oldest dropped beyond queue_size, counted) and reaches carbon once it is back.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.netns import Netns, free_port, tcp_collector, wait_until
from tests.outputs import Delivered
from tests.ulogd_ref import UlogdProcess
from ulogpy.config.model import options_model
from ulogpy.core.plugin import PluginError
from ulogpy.core.registry import registry
from ulogpy.daemon.loop import Loop

pytestmark = [pytest.mark.live]

CARBON = shutil.which("carbon-cache")
WHISPER_FETCH = shutil.which("whisper-fetch")
LINE = re.compile(r"^(\S+) (\d+) (\d+)$")


def run_until(loop: Loop, pred, timeout: float = 10.0) -> None:
    """Run the loop until `pred()` holds, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    outcome: list[bool] = []

    def check() -> None:
        if pred() or time.monotonic() > deadline:
            outcome.append(bool(pred()))
            loop.stop()
        else:
            loop.call_later(0.02, check)

    loop.call_later(0, check)
    loop.run()
    assert outcome == [True], f"condition not reached within {timeout}s"


def graphite(host: str, port: int, **opts):
    cls = registry()["GRAPHITE"]
    out = cls("g1", options_model(cls)(host=host, port=str(port), **opts))
    out.configure()
    return out


class Carbon:
    """A carbon-cache of the test's own: plaintext receiver on a random loopback port,
    one point per second kept for an hour, whisper files under `dir`."""

    def __init__(self, dir: Path) -> None:
        self.dir = dir
        self.port = free_port()
        self.whisper = dir / "storage" / "whisper"
        self.whisper.mkdir(parents=True, exist_ok=True)
        (dir / "log").mkdir(exist_ok=True)
        (dir / "storage-schemas.conf").write_text(
            "[all]\npattern = .*\nretentions = 1s:1h\n")
        (dir / "carbon.conf").write_text(f"""[cache]
STORAGE_DIR = {dir}/storage
LOCAL_DATA_DIR = {self.whisper}
WHITELISTS_DIR = {dir}/storage/lists
CONF_DIR = {dir}
LOG_DIR = {dir}/log
PID_DIR = {dir}
ENABLE_LOGROTATION = False
USER =
MAX_CACHE_SIZE = inf
MAX_UPDATES_PER_SECOND = 100000
MAX_CREATES_PER_MINUTE = inf
WHISPER_AUTOFLUSH = True
LINE_RECEIVER_INTERFACE = 127.0.0.1
LINE_RECEIVER_PORT = {self.port}
ENABLE_UDP_LISTENER = False
PICKLE_RECEIVER_INTERFACE = 127.0.0.1
PICKLE_RECEIVER_PORT = {free_port()}
CACHE_QUERY_INTERFACE = 127.0.0.1
CACHE_QUERY_PORT = {free_port()}
""")
        self.proc: subprocess.Popen | None = None

    def start(self) -> Carbon:
        self.proc = subprocess.Popen(
            [CARBON, f"--config={self.dir}/carbon.conf", "--nodaemon", "start"],
            stdout=open(self.dir / "carbon.out", "ab"), stderr=subprocess.STDOUT)

        def listening() -> bool:
            assert self.proc.poll() is None, (self.dir / "carbon.out").read_text()
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0
        wait_until(listening, 20, what="carbon-cache listening")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        (self.dir / "carbon-cache-a.pid").unlink(missing_ok=True)

    def points(self, metric: str, since: int) -> dict[int, float]:
        """The stored points of `metric` (non-null), from its whisper file."""
        path = self.whisper.joinpath(*metric.split(".")).with_suffix(".wsp")
        if not path.exists():
            return {}
        out = subprocess.run([WHISPER_FETCH, "--json", f"--from={since - 1}", str(path)],
                             capture_output=True, text=True, check=True).stdout
        data = json.loads(out)
        step, start = data["step"], data["start"]
        return {start + i * step: v for i, v in enumerate(data["values"]) if v is not None}


@pytest.fixture
def carbon(tmp_path: Path):
    if CARBON is None or WHISPER_FETCH is None:
        pytest.skip("carbon-cache / whisper-fetch not installed (graphite-carbon, "
                    "python3-whisper)")
    c = Carbon(tmp_path / "carbon")
    try:
        yield c.start()
    finally:
        c.stop()


@pytest.fixture
def loop():
    lp = Loop()
    yield lp
    lp.close()


def test_carbon_stores_the_metrics_and_the_queue_bridges_an_outage(carbon: Carbon,
                                                                   loop: Loop) -> None:
    out = Delivered(graphite("127.0.0.1", carbon.port, prefix="ulogpy.t", queue_size=4), loop)
    out.start()
    now = int(time.time())
    first = [{"sum.name": f"c{i}", "sum.pkts": 10 + i, "sum.bytes": 1000 + i,
              "oob.time.sec": now - 20 + i} for i in range(3)]
    for rec in first:
        out.write(rec)
    out.flush()

    def stored(records) -> bool:
        return all(
            carbon.points(f"ulogpy.t.{r['sum.name']}.bytes", now - 30).get(r["oob.time.sec"])
            == r["sum.bytes"] and
            carbon.points(f"ulogpy.t.{r['sum.name']}.pkts", now - 30).get(r["oob.time.sec"])
            == r["sum.pkts"] for r in records)

    run_until(loop, lambda: stored(first), timeout=15)
    assert out.counters.get("written") == 3

    # carbon goes away: the next 6 records wait, the 2 oldest beyond queue_size=4 go
    carbon.stop()
    run_until(loop, lambda: out.writer.up is False or out.counters.get("write_errors") > 0,
              timeout=5)
    later = [{"sum.name": f"d{i}", "sum.pkts": 50 + i, "sum.bytes": 5000 + i,
              "oob.time.sec": now - 10 + i} for i in range(6)]
    for rec in later:
        out.write(rec)
        out.flush()
    assert out.counters.get("dropped") == 2
    carbon.start()
    run_until(loop, lambda: stored(later[2:]), timeout=30)
    assert not carbon.points("ulogpy.t.d0.pkts", now - 30)
    assert not carbon.points("ulogpy.t.d1.pkts", now - 30)
    assert out.counters.get("written") == 7
    assert out.counters.get("reconnects") >= 1
    out.stop()


# -- the same lines as ulogd ------------------------------------------------------------

ULOGD_CONF = """\
[global]
loglevel=3
stack=acct1:NFACCT,graphite1:GRAPHITE
[acct1]
pollinterval=1
zerocounter=0
[graphite1]
host="127.0.0.1"
port="{port}"
prefix="{prefix}"
"""


def kernel_sums(ns: Netns) -> list[dict]:
    """`nfacct list`: each object's name and counters, as the kernel reports them."""
    rx = re.compile(r"pkts = (\d+), bytes = (\d+) \} = (\S+);")
    return [{"sum.name": m[3], "sum.pkts": int(m[1]), "sum.bytes": int(m[2])}
            for m in rx.finditer(ns.run(["nfacct", "list"]).stdout)]


def ulogpy_lines(ns: Netns, tmp: Path, conf: str, port: int) -> list[str]:
    """ulogpy's GRAPHITE lines for one poll: from its own NFACCT input if it has one,
    else for the sums `nfacct list` reports, at the current second."""
    listener = tcp_collector(ns, port, tmp / "ulogpy.bin", 3.0)
    if "NFACCT" in registry():
        from tests.ulogd_ref import ULOGPY
        with UlogdProcess(ns, conf, tmp / "ulogpy", binary=ULOGPY):
            listener.wait(10)
    else:
        from tests.live.test_json_socket import inside
        with inside(ns):
            lp = Loop()
            out = Delivered(graphite("127.0.0.1", port, prefix="nf.acct"), lp)
            out.start()
            sec = int(time.time())
            for rec in kernel_sums(ns):
                out.write({**rec, "oob.time.sec": sec})
            out.flush()
            run_until(lp, lambda: out.counters.get("written") >= 1, timeout=5)
            out.stop()
            lp.close()
        listener.wait(10)
    return (tmp / "ulogpy.bin").read_bytes().decode().splitlines()


@pytest.mark.ulogd
def test_same_lines_as_ulogd_for_the_same_counters(tmp_path: Path) -> None:
    with Netns("graphite") as ns:
        ns.ip("link", "set", "lo", "up")
        names = [f"gx{i}" for i in range(3)]
        for name in names:
            ns.run(["nfacct", "add", name])
        ns.run(["iptables", "-A", "OUTPUT", "-p", "icmp", "-m", "nfacct",
                "--nfacct-name", names[0]])
        ns.run(["iptables", "-A", "OUTPUT", "-p", "icmp", "--icmp-type", "echo-reply",
                "-m", "nfacct", "--nfacct-name", names[1]])
        ns.run(["ping", "-c", "4", "-i", "0.2", "-s", "100", "127.0.0.1"])
        port = free_port()
        conf = ULOGD_CONF.format(port=port, prefix="nf.acct")
        listener = tcp_collector(ns, port, tmp_path / "ulogd.bin", 2.5)
        (tmp_path / "ulogd").mkdir()
        before = int(time.time())
        with UlogdProcess(ns, conf, tmp_path / "ulogd"):
            listener.wait(10)
        theirs = (tmp_path / "ulogd.bin").read_bytes().decode().splitlines()
        (tmp_path / "ulogpy").mkdir()
        ours = ulogpy_lines(ns, tmp_path, conf, port)

    def first_poll(lines: list[str]) -> list[tuple[str, str]]:
        parsed = [LINE.match(line) for line in lines]
        assert all(parsed), lines
        stamp = parsed[0][3]
        assert before - 1 <= int(stamp) <= time.time() + 1
        return [(m[1], m[2]) for m in parsed if m[3] == stamp]

    expected = []
    for name, pkts, size in (("gx0", 8, 8 * 128), ("gx1", 4, 4 * 128), ("gx2", 0, 0)):
        expected += [(f"nf.acct.{name}.pkts", str(pkts)), (f"nf.acct.{name}.bytes", str(size))]
    assert first_poll(theirs) == expected
    assert first_poll(ours) == expected


@pytest.mark.parametrize("opts, words", [
    ({"host": "", "port": "2003"}, "option 'host'"),
    ({"host": "127.0.0.1", "port": ""}, "option 'port'"),
    ({"host": "127.0.0.1", "port": "70000"}, "not a port number"),
    ({"host": "127.0.0.1", "port": "no-such-service"}, "unknown tcp service"),
])
def test_bad_options_are_refused_by_name(opts: dict, words: str) -> None:
    cls = registry()["GRAPHITE"]
    with pytest.raises(PluginError, match=words):
        cls("g1", options_model(cls)(**opts)).configure()
