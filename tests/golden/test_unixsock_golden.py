"""ulogd 2.0.8's golden files (`tests/fixtures/unixsock/`) replayed through ulogpy.

Each golden file is what the real ulogd wrote when `send_unixsock.py` fed its UNIXSOCK
inputs (see the fixtures' README).  Here the same configuration, with its paths moved
into a temporary directory, runs under ulogpy and is fed by the same script with the
same arguments; the output must equal the golden file byte for byte, except:

* the host name in LOGEMU lines (ours must be this machine's short host name);
* values read from the clock at writing time, each of which must be a correct rendering
  of a second between the first send and the daemon's exit: GPRINT's `timestamp=`, and
  for packets sent without options (so without a time) LOGEMU's time stamp and JSON's
  `timestamp` (both in the scenario's time zone, `+HHMM` offset included);
* GPRINT's `ip.hsaddr`/`ip.hdaddr` of IPv6 packets: ulogd's IP2HBIN gives a pointer there
  (spec B6), so GPRINT prints 4 bytes of a heap address that changes from run to run.

Per scenario (one configuration, time zone and series of sender calls) ulogpy and the
real ulogd run side by side, both fed by the same sender calls; ulogd must still write
the golden files on this machine (tests marked `ulogd`).  A stack naming a plugin ulogpy
does not have yet is left out of ulogpy's config, and its goldens fail saying so.

Differences from the sample configuration, all in the name of the test: paths are
rewritten, SQLITE3 is loaded from the system plugin directory, `logfile="stdout"`
becomes a file (to see when the daemon is ready), ulogd's UDP port is 19998 (ulogpy's
keeps 19999; both share one namespace), and ulogpy's configs lose `bogus_key=42`
(ulogpy refuses unknown options where ulogd ignores them, spec C1) and give SQLITE3 a
`spool_dir` of their own (ulogpy's spool of unwritten rows).  One documented
fix is applied to a golden before ulogpy's output is compared with it (`ULOGPY_FIXES`):
SQLITE3 stores unsigned 32-bit values unsigned (spec O7).
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.netns import Netns, wait_until
from tests.streampeer import StreamPeer
from tests.ulogd_ref import (
    ULOGD_BIN,
    ULOGD_PLUGIN_DIR,
    ULOGPY,
    UlogdError,
    UlogdProcess,
    read_lines,
    ulogd_skip_reason,
)
from ulogpy.core.registry import registry

pytestmark = pytest.mark.live  # namespaces (the JSON UDP mode sends to 127.0.0.1)

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "unixsock"
SENDER = FIX / "send_unixsock.py"
SAMPLE_DIR = re.compile(r"/work/steering/research/\.scratch/t/(?:t4/)?")
SQLITE_SO = re.compile(r'"[^"]*/ulogd_output_SQLITE3\.so"')
#: The two stacks of the Europe/Paris run (from the sample's own log).
PARIS_STACKS = (
    "stack=ua:UNIXSOCK,base1:BASE,ip2str1:IP2STR,json1:JSON",
    "stack=ub:UNIXSOCK,base1:BASE,ip2str1:IP2STR,print1:PRINTPKT,emu1:LOGEMU",
)
UDP_PORT = {"ulogpy": 19999, "ulogd": 19998}
#: Seconds to wait for every output to be complete before stopping the daemons.
OUTPUT_WAIT_S = 8.0
HOST = socket.gethostname().split(".", 1)[0]

UDP_COLLECTOR = """\
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
out = open(sys.argv[2], "w")
open(sys.argv[2] + ".ready", "w").close()
while True:
    out.write(repr(s.recv(65535)) + "\\n")
    out.flush()
"""


@dataclass(frozen=True)
class Scenario:
    conf: str
    tz: str
    #: Replacement for the config's stack lines (None: keep them).
    stacks: tuple[str, ...] | None
    #: Arguments after the socket list, one tuple per sender call.
    sends: tuple[tuple[str, ...], ...]


SCENARIOS = {
    "utc": Scenario("ulogd.conf", "UTC", None, (("all", "opts"),)),
    "paris": Scenario("ulogd.conf", "Europe/Paris", PARIS_STACKS,
                      (("tcp-syn,ipv6-udp",), ("udp,icmp-echo-req", "opts"))),
    "sockets": Scenario("json_socket_modes.conf", "UTC", None, (("udp,icmp-echo-req",),)),
}


@dataclass(frozen=True)
class Golden:
    file: str
    scenario: str
    #: The UNIXSOCK id of the stack that writes it.
    stack: str
    #: Where the daemon writes it: a file in its directory, `json.sock` or `udp`.
    output: str
    #: How to read and mask it: logemu, json, gprint, plain, rows, udp.
    kind: str


GOLDENS = (
    Golden("logemu_utc.log", "utc", "ua", "emu.log", "logemu"),
    Golden("json_utc.log", "utc", "ub", "json1.log", "json"),
    Golden("gprint.log", "utc", "uc", "gprint.log", "gprint"),
    Golden("oprint.log", "utc", "ud", "oprint.log", "plain"),
    Golden("sqlite3_rows.txt", "utc", "ue", "db.sqlite", "rows"),
    Golden("json_eventv1_boollabel.log", "utc", "uf", "json2.log", "json"),
    Golden("logemu_tz_paris.log", "paris", "ub", "emu.log", "logemu"),
    Golden("json_tz_paris.log", "paris", "ua", "json1.log", "json"),
    Golden("json_mode_unix_received.txt", "sockets", "ua", "json.sock", "json"),
    Golden("json_mode_udp_datagrams.txt", "sockets", "ub", "udp", "udp"),
)


# -- configurations ------------------------------------------------------------------


def make_conf(sc: Scenario, d: Path, who: str) -> str:
    """The scenario's config for `who` ("ulogd" or "ulogpy") with its paths in `d`."""
    text = (FIX / sc.conf).read_text()
    text = SQLITE_SO.sub(f'"{ULOGD_PLUGIN_DIR}/ulogd_output_SQLITE3.so"', text)
    text = SAMPLE_DIR.sub(f"{d}/", text)
    text = text.replace('logfile="stdout"', f'logfile="{d}/ulogd.log"')
    text = text.replace('port="19999"', f'port="{UDP_PORT[who]}"')
    out: list[str] = []
    replaced = False
    for line in text.splitlines():
        if line.startswith("stack=") and sc.stacks is not None:
            if not replaced:
                out.extend(sc.stacks)
                replaced = True
            continue
        if who == "ulogpy" and line.startswith("bogus_key="):
            continue
        out.append(line)
        if who == "ulogpy" and line == "[sq1]" and _sqlite_spools():
            out.append(f'spool_dir="{d}/spool"')  # not the host's /var/lib/ulogpy/spool
    return "\n".join(out) + "\n"


def _sqlite_spools() -> bool:
    cls = registry().get("SQLITE3")
    return cls is not None and any(o.name == "spool_dir" for o in cls.options)


def stacks_of(conf: str) -> list[tuple[str, list[str]]]:
    """(input id, plugin names) per stack line."""
    result = []
    for line in conf.splitlines():
        if line.startswith("stack="):
            tokens = [t.split(":", 1) for t in line[len("stack="):].split(",")]
            result.append((tokens[0][0], [t[1] for t in tokens]))
    return result


# -- one daemon ------------------------------------------------------------------------


@dataclass
class Run:
    who: str
    dir: Path
    goldens: list[Golden]
    conf: str = ""
    error: str | None = None
    proc: UlogdProcess | None = None
    unix: StreamPeer | None = None
    udp: subprocess.Popen | None = None
    returncode: int | None = None
    sockets: list[Path] = field(default_factory=list)
    leftover: list[Path] = field(default_factory=list)
    #: Golden file -> why ulogpy could not run its stack.
    missing: dict[str, str] = field(default_factory=dict)

    def read(self, golden: Golden) -> list[str]:
        if golden.kind == "rows":
            return read_rows(self.dir / golden.output)
        if golden.output == "json.sock":
            return self.unix.lines() if self.unix else []
        if golden.output == "udp":
            return read_lines(self.dir / "udp.txt")
        return read_lines(self.dir / golden.output)

    def complete(self) -> bool:
        return all(len(self.read(g)) >= len(golden_lines(g)) for g in self.goldens
                   if g.file not in self.missing)


def read_rows(db: Path) -> list[str]:
    """`sqlite3 -header db 'select * from pkt'`: header, then `|`-joined rows, NULL empty."""
    if not db.exists():
        return []
    con = sqlite3.connect(db, timeout=2)
    try:
        cur = con.execute("select * from pkt")
        rows = ["|".join(d[0] for d in cur.description)]
        rows += ["|".join("" if v is None else str(v) for v in row) for row in cur]
    except sqlite3.Error:
        return []
    finally:
        con.close()
    return rows


def golden_lines(golden: Golden) -> list[str]:
    return (FIX / golden.file).read_text().split("\n")[:-1]


def drop_unbuilt_stacks(run: Run) -> None:
    """ulogpy refuses a config naming a plugin it lacks: run the other stacks, and note
    for the goldens of the dropped ones which plugin is missing."""
    known = registry()
    kept = []
    for line in run.conf.splitlines():
        if line.startswith("stack="):
            inp, names = stacks_of(line)[0]
            missing = sorted(n for n in names if n not in known)
            if missing:
                for g in run.goldens:
                    if g.stack == inp:
                        run.missing[g.file] = f"ulogpy has no plugin {', '.join(missing)} yet"
                continue
        kept.append(line)
    run.conf = "\n".join(kept) + "\n"
    if not stacks_of(run.conf):
        run.error = "; ".join(sorted(set(run.missing.values())))


def prepare(ns: Netns, run: Run, sc: Scenario) -> None:
    """Config, database and peers of one daemon; a problem becomes `run.error`."""
    run.dir.mkdir(parents=True)
    run.conf = make_conf(sc, run.dir, run.who)
    if run.who == "ulogpy":
        try:
            drop_unbuilt_stacks(run)
        except Exception as exc:  # a plugin module that does not even import
            run.error = f"ulogpy's plugins do not load: {exc!r}"
        if run.error:
            return
    stacks = stacks_of(run.conf)
    run.sockets = [run.dir / f"{inp}.sock" for inp, _ in stacks]
    if any("SQLITE3" in names for _, names in stacks):
        con = sqlite3.connect(run.dir / "db.sqlite")
        con.executescript((FIX / "sqlite3_schema.sql").read_text())
        con.close()
    outputs = {g.output for g in run.goldens}
    if "json.sock" in outputs:
        run.unix = StreamPeer(socket.AF_UNIX, str(run.dir / "json.sock")).serve()
    if "udp" in outputs:
        ready = run.dir / "udp.txt.ready"
        run.udp = ns.popen([sys.executable, "-c", UDP_COLLECTOR, str(UDP_PORT[run.who]),
                            str(run.dir / "udp.txt")])
        wait_until(ready.exists, 10, what="the UDP collector")


@contextlib.contextmanager
def timezone(tz: str):
    """TZ for the daemons started inside (UlogdProcess passes our environment on)."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = tz
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old


@dataclass
class Outcome:
    scenario: Scenario
    ulogd: Run | None
    ulogpy: Run
    t0: float
    t1: float


def run_scenario(ns: Netns, base: Path, name: str) -> Outcome:
    """Start ulogd and ulogpy side by side, feed both with one sender call, stop them."""
    sc = SCENARIOS[name]
    goldens = [g for g in GOLDENS if g.scenario == name]
    runs: list[Run] = []
    ulogd = None
    if ulogd_skip_reason() is None:
        ulogd = Run("ulogd", base / "ulogd", goldens)
        runs.append(ulogd)
    ours = Run("ulogpy", base / "ulogpy", goldens)
    runs.append(ours)
    t0 = time.time()
    try:
        for run in runs:
            try:
                prepare(ns, run, sc)
            except Exception as exc:
                run.error = run.error or f"setting up {run.who} failed: {exc!r}"
        live = [r for r in runs if r.error is None]
        with timezone(sc.tz):
            for run in live:
                binary = ULOGD_BIN if run.who == "ulogd" else ULOGPY
                run.proc = UlogdProcess(ns, run.conf, run.dir, binary=binary).start(wait=False)
        for run in live:
            try:
                run.proc.wait_ready(15)
            except UlogdError as exc:
                run.error = f"{run.who} did not start: {exc}"
        live = [r for r in live if r.error is None]
        t0 = time.time()
        sockets = ",".join(str(s) for r in live for s in r.sockets)
        if live:
            for args in sc.sends:
                ns.python([str(SENDER), sockets, *args], timeout=60)
        deadline = time.monotonic() + OUTPUT_WAIT_S
        while time.monotonic() < deadline and not all(r.complete() for r in live):
            time.sleep(0.05)
    finally:
        for run in runs:
            if run.proc is not None:
                run.returncode = run.proc.stop()
                run.leftover = [s for s in run.sockets if s.exists()]
        t1 = time.time()
        for run in runs:
            if run.unix is not None:
                run.unix.close()
            if run.udp is not None:
                run.udp.terminate()
                run.udp.wait(5)
    return Outcome(sc, ulogd, ours, t0, t1)


# -- comparing -------------------------------------------------------------------------

LOGEMU_HEAD = re.compile(r"^(?P<stamp>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) (?P<host>\S+) ")
JSON_TIME = re.compile(r'"(@?timestamp)": "([^"]*)"')
GPRINT_TIME = re.compile(r"^timestamp=([^,]*),")
#: ulogd's IP2HBIN gives a pointer for IPv6 (spec B6): GPRINT prints 4 bytes of an address.
HBIN_ADDR = re.compile(r"\b(ip\.h[sd]addr)=[^,]*")


def clock_renderings(kind: str, tz: str, t0: float, t1: float) -> set[str]:
    """Every way the clock may legitimately be written between `t0` and `t1`."""
    zone = ZoneInfo(tz)
    out = set()
    for sec in range(int(t0) - 1, int(t1) + 2):
        dt = datetime.fromtimestamp(sec, zone)
        if kind == "logemu":
            out.add(dt.strftime("%b %e %H:%M:%S"))
        elif kind == "json":
            offset = dt.strftime("%z")
            out.add(dt.strftime("%Y-%m-%dT%H:%M:%S") + ("" if offset == "+0000" else offset))
        else:
            out.add(dt.strftime("%Y/%m/%d-%H:%M:%S"))
    return out


def mask(kind: str, line: str, clocked: bool) -> tuple[str, str | None, str | None]:
    """(line with masked parts, clock text or None, host or None)."""
    if kind == "logemu" and (m := LOGEMU_HEAD.match(line)):
        stamp = m["stamp"] if clocked else None
        head = ("<clock>" if clocked else m["stamp"]) + " <host> "
        return head + line[m.end():], stamp, m["host"]
    if kind == "json" and clocked and (m := JSON_TIME.search(line)):
        return line[:m.start(2)] + "<clock>" + line[m.end(2):], m[2], None
    if kind == "gprint" and (m := GPRINT_TIME.match(line)):
        rest = line[m.end():]
        if ",oob.family=10," in rest:
            rest = HBIN_ADDR.sub(r"\1=<pointer>", rest)
        return "timestamp=<clock>," + rest, m[1], None
    return line, None, None


def is_clocked(kind: str, golden_line: str) -> bool:
    """Did ulogd read this line's time from its clock?  Only packets without options
    (no `PFX:` prefix, no `oob.time.sec`) and every GPRINT line."""
    if kind == "logemu":
        return " PFX:" not in golden_line
    if kind == "json":
        return '"oob.time.sec"' not in golden_line
    return kind == "gprint"


def unsigned_u32(lines: list[str]) -> list[str]:
    """ulogd binds UINT32 as a signed int (tcp_seq 4000000000 -> -294967296, spec O7);
    ulogpy's SQLITE3 keeps the value.  No column of the golden table is signed."""
    return [NEGATIVE.sub(lambda m: str(int(m[0]) + 2**32), line) for line in lines]


NEGATIVE = re.compile(r"(?<![^|])-\d+(?![^|])")
#: Golden file -> the documented fix ulogpy makes on top of it (ulogd itself is compared
#: with the golden file as it is).
ULOGPY_FIXES = {"sqlite3_rows.txt": unsigned_u32}


def compare(golden: Golden, got: list[str], outcome: Outcome, host: str | None,
            fix=None) -> None:
    want = golden_lines(golden)
    if fix is not None:
        want = fix(want)
    clocks = clock_renderings(golden.kind, outcome.scenario.tz, outcome.t0, outcome.t1)
    problems = []
    masked_want = [mask(golden.kind, line, is_clocked(golden.kind, line))[0] for line in want]
    masked_got = []
    for i, line in enumerate(got):
        clocked = i < len(want) and is_clocked(golden.kind, want[i])
        masked, stamp, line_host = mask(golden.kind, line, clocked)
        masked_got.append(masked)
        if stamp is not None and stamp not in clocks:
            problems.append(f"line {i + 1}: clock value {stamp!r} is not a time between the "
                            f"first send and the exit ({outcome.scenario.tz})")
        if host is not None and line_host is not None and line_host != host:
            problems.append(f"line {i + 1}: host {line_host!r}, expected {host!r}")
    if masked_got != masked_want:
        diff = difflib.unified_diff(masked_want, masked_got, f"golden {golden.file}",
                                    "written", lineterm="", n=1)
        problems.append("\n".join(diff))
    assert not problems, "\n".join(problems)


# -- tests -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Run each scenario once (lazily) in one namespace for the whole module."""
    cache: dict[str, Outcome | Exception] = {}
    with Netns("usock") as ns:

        def get(name: str) -> Outcome:
            if name not in cache:
                try:
                    cache[name] = run_scenario(ns, tmp_path_factory.mktemp(name), name)
                except Exception as exc:  # once per module, not once per test
                    cache[name] = exc
            if isinstance(cache[name], Exception):
                pytest.fail(f"scenario {name} failed: {cache[name]!r}", pytrace=False)
            return cache[name]

        yield get


def _ids(golden: Golden) -> str:
    return golden.file.split(".")[0]


@pytest.mark.parametrize("golden", GOLDENS, ids=_ids)
def test_ulogpy_writes_the_golden_file(golden: Golden, outcomes) -> None:
    outcome = outcomes(golden.scenario)
    run = outcome.ulogpy
    reason = run.error or run.missing.get(golden.file)
    if reason:
        pytest.fail(reason, pytrace=False)
    compare(golden, run.read(golden), outcome, HOST, ULOGPY_FIXES.get(golden.file))
    assert run.returncode == 0, run.proc.output_text() + run.proc.log_text()
    assert run.leftover == [], "UNIXSOCK left its socket file behind at exit"


@pytest.mark.ulogd
@pytest.mark.parametrize("golden", GOLDENS, ids=_ids)
def test_ulogd_still_writes_the_golden_file(golden: Golden, outcomes) -> None:
    """The oracle check: the golden files describe the ulogd installed here."""
    outcome = outcomes(golden.scenario)
    run = outcome.ulogd
    assert run is not None and run.error is None, run.error if run else "ulogd not run"
    compare(golden, run.read(golden), outcome, None)
