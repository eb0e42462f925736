"""The real daemon as a process, inside a private network namespace.

Pidfile, signals (SIGHUP reopen, SIGTERM/SIGINT flush and exit 0), privilege drop,
its own log, daemonising, and the NFCT sysctl switches.  Every daemon runs in a
namespace of its own (``ulogpy-dt-<hex>``) whose nftables ruleset uses conntrack;
nothing here touches the main namespace's firewall or sysctls.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.ulogd_ref import ULOGPY

pytestmark = pytest.mark.live

OWN_LOG_LINE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"[ \d]\d \d\d:\d\d:\d\d \d{4} <[13578]> \w+:\d+ \S.*$"
)
SEND_UDP = (
    "import socket\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.sendto(b'x', ('127.0.0.1', 9))\n"
    "print(s.getsockname()[1])\n"
)


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=30, check=check)


def wait_for(pred: Callable[[], object], timeout: float = 10.0, what: str = "") -> object:
    """Poll `pred` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or pred}")
        time.sleep(0.05)


def text_of(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


@pytest.fixture
def ns(live_ok) -> Iterator[str]:
    """A fresh namespace, lo up, with a ruleset that makes conntrack track its traffic."""
    name = f"ulogpy-dt-{secrets.token_hex(3)}"
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "-n", name, "link", "set", "lo", "up")
        for rule in (
            ["add", "table", "inet", "t"],
            ["add", "chain", "inet", "t", "out", "{ type filter hook output priority 0; }"],
            ["add", "rule", "inet", "t", "out", "ct", "state", "new", "counter"],
        ):
            sh("ip", "netns", "exec", name, "nft", *rule)
        yield name
    finally:
        # whatever still runs in it was started by this test (e.g. a daemon left by a failure)
        for pid in sh("ip", "netns", "pids", name, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        sh("ip", "netns", "del", name, check=False)


def udp_flow(ns: str) -> int:
    """One new UDP flow 127.0.0.1:<sport> -> 127.0.0.1:9 in `ns`; returns the source port."""
    out = sh("ip", "netns", "exec", ns, sys.executable, "-c", SEND_UDP).stdout
    return int(out.strip())


def emu_has(path: Path, sport: int) -> bool:
    return f"SPT={sport} DPT=9 " in text_of(path)


def json_has(path: Path, sport: int) -> bool:
    return f'"orig.l4.sport": {sport},' in text_of(path)


class Files:
    """Paths of one daemon's configuration and outputs."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.conf = tmp / "ulogpy.conf"
        self.own = tmp / "own.log"
        self.emu = tmp / "flows.log"
        self.json = tmp / "flows.json"
        self.pid = tmp / "ulogpy.pid"

    def write(self, sync: int = 1, nfct_extra: str = "", emu: str | None = None) -> Path:
        self.conf.write_text(
            "[global]\n"
            f'logfile="{self.own}"\n'
            "loglevel=1\n"
            "stack=ct1:NFCT,ip2str1:IP2STR,print1:PRINTFLOW,emu1:LOGEMU\n"
            "stack=ct1:NFCT,ip2str1:IP2STR,json1:JSON\n"
            "[ct1]\n"
            "hash_enable=0\n"
            "event_mask=1\n"
            f"{nfct_extra}\n"
            "[emu1]\n"
            f'file="{emu or self.emu}"\n'
            f"sync={sync}\n"
            "[json1]\n"
            f'file="{self.json}"\n'
            f"sync={sync}\n"
        )
        return self.conf


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)


@contextlib.contextmanager
def daemon(ns: str, f: Files, *args: str,
           env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    """Run `ulogpy -c CONF ARGS` in `ns` until initialization finished; kill it at the end."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, ULOGPY, "-c", str(f.conf), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"daemon exited with {proc.returncode}: {err}{out}")
            return "initialization finished" in text_of(f.own)

        wait_for(ready, what="the daemon to start")
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> str:
    """Send `sig`, expect exit status 0 within a few seconds; return stderr."""
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, (proc.returncode, err)
    assert "Traceback" not in err
    return err


def pidfile_locked(path: Path) -> bool:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def status_ids(pid: int) -> dict[str, list[int]]:
    ids = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Uid", "Gid"):
            ids[key] = [int(x) for x in rest.split()]
    return ids


# --------------------------------------------------------------------------- tests


def test_pidfile_created_locked_and_removed(ns: str, files: Files) -> None:
    files.write()
    with daemon(ns, files, "-p", str(files.pid)) as proc:
        assert files.pid.read_text() == f"{proc.pid}\n"
        assert pidfile_locked(files.pid)
        second = subprocess.run(
            ["ip", "netns", "exec", ns, ULOGPY, "-c", str(files.conf), "-p", str(files.pid)],
            capture_output=True, text=True, timeout=20,
        )
        assert second.returncode == 1
        assert f"pid {proc.pid}" in second.stderr and "Traceback" not in second.stderr
        assert files.pid.read_text() == f"{proc.pid}\n"  # untouched by the loser
        stop(proc)
    assert not files.pid.exists()


def test_stale_pidfile_is_replaced(ns: str, files: Files) -> None:
    files.write()
    dead = subprocess.Popen(["true"])
    dead.wait()
    files.pid.write_text(f"{dead.pid}\n")
    assert not pidfile_locked(files.pid)
    with daemon(ns, files, "-p", str(files.pid)) as proc:
        assert files.pid.read_text() == f"{proc.pid}\n"
        assert pidfile_locked(files.pid)
        err = stop(proc)
    assert "stale" in err and str(dead.pid) in err
    assert not files.pid.exists()


def test_sighup_reopens_output_files(ns: str, files: Files) -> None:
    files.write(sync=1)
    with daemon(ns, files) as proc:
        first = udp_flow(ns)
        wait_for(lambda: emu_has(files.emu, first) and json_has(files.json, first),
                 what="the first flow in both files")
        rotated = {p: p.with_name(p.name + ".1") for p in (files.emu, files.json, files.own)}
        for old, new in rotated.items():
            old.rename(new)
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: files.emu.exists() and files.json.exists() and files.own.exists(),
                 what="fresh files after SIGHUP")
        second = udp_flow(ns)
        wait_for(lambda: emu_has(files.emu, second) and json_has(files.json, second),
                 what="the second flow in the fresh files")
        assert not emu_has(files.emu, first) and not json_has(files.json, first)
        assert not emu_has(rotated[files.emu], second)
        assert not json_has(rotated[files.json], second)
        assert emu_has(rotated[files.emu], first)
        stop(proc)
    # the daemon's own log was reopened too and goes on in the new file
    assert "signal SIGHUP received" in rotated[files.own].read_text()
    assert "reopening" in files.own.read_text()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_terminal_signal_flushes_buffered_lines(ns: str, files: Files, sig: int) -> None:
    files.write(sync=0)
    with daemon(ns, files) as proc:
        # With sync=0 lines wait up to a second in the outputs' buffers.  SIGUSR1 makes the
        # daemon log its counters, which shows when NFCT has handed the flow to the stacks;
        # retry if the lines happened to be written before the check.
        for n in range(1, 7):
            sport = udp_flow(ns)
            proc.send_signal(signal.SIGUSR1)
            wait_for(lambda n=n: re.search(rf"counters ct1:NFCT: .*\bemitted={n}\b",
                                           text_of(files.own)),
                     what=f"flow {n} to be handled")
            if not emu_has(files.emu, sport) and not json_has(files.json, sport):
                break
        else:
            pytest.fail("every flow was flushed before the signal; cannot test buffering")
        stop(proc, sig)
    assert emu_has(files.emu, sport)
    assert json_has(files.json, sport)
    own = files.own.read_text()
    assert "Terminal signal received, exiting" in own
    assert re.search(r"counters emu1:LOGEMU: .*written=\d", own)


def test_drops_privileges_after_opening_sockets(ns: str, files: Files) -> None:
    nobody = pwd.getpwnam("nobody")
    files.write(sync=1)
    with daemon(ns, files, "-u", "nobody") as proc:
        ids = status_ids(proc.pid)
        assert ids["Uid"] == [nobody.pw_uid] * 4
        assert ids["Gid"] == [nobody.pw_gid] * 4
        sport = udp_flow(ns)
        wait_for(lambda: emu_has(files.emu, sport) and json_has(files.json, sport),
                 what="a flow logged after dropping privileges")
        stop(proc)
    assert "running as user nobody" in files.own.read_text()


@pytest.mark.parametrize("pure", [False, True], ids=["compiled", "pure"])
def test_start_says_once_which_path_runs(ns: str, files: Files, pure: bool) -> None:
    """The compiled fast path is built here (scripts/setup builds it); ULOGPY_PURE=1
    turns it off, and the daemon says so once, at NOTICE, and still logs flows."""
    from ulogpy import fastpath

    if not pure and fastpath.compiled is None:
        pytest.fail(f"the compiled fast path should be built here: {fastpath.reason}")
    env = dict(os.environ)
    env.pop("ULOGPY_PURE", None)
    if pure:
        env["ULOGPY_PURE"] = "1"
    files.write(sync=1)
    with daemon(ns, files, env=env) as proc:
        sport = udp_flow(ns)
        wait_for(lambda: emu_has(files.emu, sport), what="one flow")
        stop(proc)
    text = files.own.read_text()
    if pure:
        assert text.count("pure-Python path: ULOGPY_PURE is set") == 1
        assert re.search(r" <5> .*pure-Python path: ULOGPY_PURE is set in the environment", text)
        assert "compiled fast path on" not in text
    else:
        assert text.count("compiled fast path on (ulogpy._fastpath)") == 1
        assert "pure-Python path" not in text
    assert f'"orig.l4.sport": {sport}, ' in files.json.read_text()


def test_own_log_line_shape(ns: str, files: Files) -> None:
    files.write(sync=1)
    with daemon(ns, files) as proc:
        sport = udp_flow(ns)
        wait_for(lambda: emu_has(files.emu, sport), what="one flow")
        stop(proc)
    lines = files.own.read_text().splitlines()
    assert lines
    for line in lines:
        assert OWN_LOG_LINE.match(line), line
    text = "\n".join(lines)
    assert re.search(r" <\d> \w+:\d+ initialization finished", text)
    for inst in ("ct1:NFCT", "ip2str1:IP2STR", "print1:PRINTFLOW", "emu1:LOGEMU", "json1:JSON"):
        assert f"counters {inst}: " in text, inst
    assert re.search(r"counters ct1:NFCT: .*emitted=\d", text)
    assert re.search(r"counters json1:JSON: .*written=\d", text)
    # levels: loglevel=1 lets debug/info lines through, notices carry <5>
    assert " <3> " in text or " <1> " in text
    assert " <5> " in text


def test_daemonize(ns: str, files: Files) -> None:
    files.write(sync=1)
    cmd = ["ip", "netns", "exec", ns, ULOGPY, "-c", str(files.conf), "-p", str(files.pid), "-d"]
    start = time.monotonic()
    launcher = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid = None
    try:
        out, err = launcher.communicate(timeout=10)
        assert launcher.returncode == 0, err
        assert time.monotonic() - start < 8
        assert out == "" and err == ""
        pid = int(files.pid.read_text())
        assert pid != launcher.pid
        assert Path(f"/proc/{pid}").exists()
        assert ULOGPY in Path(f"/proc/{pid}/cmdline").read_bytes().decode().replace("\0", " ")
        assert pidfile_locked(files.pid)
        sport = udp_flow(ns)
        wait_for(lambda: emu_has(files.emu, sport), what="a flow logged by the daemon")
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), what="the daemon to exit")
        pid = None
        assert not files.pid.exists()
        assert "exiting" in files.own.read_text()
    finally:
        if launcher.poll() is None:
            launcher.kill()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_daemonize_reports_start_failure(ns: str, files: Files) -> None:
    bad = "/proc/nope/x.log"
    files.write(emu=bad)
    cmd = ["ip", "netns", "exec", ns, ULOGPY, "-c", str(files.conf), "-p", str(files.pid), "-d"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=15)
    assert proc.returncode == 1
    assert bad in proc.stderr and "emu1" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not files.pid.exists()


def test_conntrack_sysctls_turned_on_inside_namespace(ns: str, files: Files) -> None:
    names = ("net.netfilter.nf_conntrack_acct", "net.netfilter.nf_conntrack_timestamp")

    def values() -> list[str]:
        return [sh("ip", "netns", "exec", ns, "sysctl", "-n", n).stdout.strip() for n in names]

    def host_values() -> list[str]:
        return [Path("/proc/sys", n.replace(".", "/")).read_text().strip() for n in names]

    host_before = host_values()
    assert values() == ["0", "0"], "a fresh namespace should start with both off"
    files.write(nfct_extra="conntrack_acct=1\nconntrack_timestamp=1")
    with daemon(ns, files) as proc:
        assert values() == ["1", "1"]
        sport = udp_flow(ns)
        wait_for(lambda: emu_has(files.emu, sport), what="a flow")
        stop(proc)
    own = files.own.read_text()
    for n in names:
        assert re.search(rf"turned on {re.escape(n)} \(was 0\)", own), n
    assert host_values() == host_before
