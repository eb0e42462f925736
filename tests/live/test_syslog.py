"""SYSLOG, live: ulogd 2.0.8 and ulogpy send the same datagrams to a /dev/log the test owns.

Each daemon runs in a private mount namespace with a /dev of its own (a
tmpfs holding the usual device nodes, bind-mounted, and `log`, a link to a
datagram socket the test binds in its temporary directory), so nothing
reaches or touches the host's /dev/log.  One nft rule logs each loopback
packet to two NFLOG groups, one per daemon; each daemon has two SYSLOG
stacks on it: the defaults (LOG_KERN, LOG_NOTICE: delivered as daemon
facility, as glibc does) and LOG_LOCAL3 / LOG_INFO.

Per priority, the messages must be the same bytes in the same order apart
from the time stamp (each daemon's clock, within `CLOCK_TOLERANCE_S`) and
the pid, which must be the sending daemon's own.

Also: a bad facility or level stops start-up with ulogd's words, exit 1;
and a syslog socket that is absent at start (syslog daemon not yet up)
loses nothing: ulogpy keeps the messages and sends them once it is there;
a /dev/log that is a stream socket gets what glibc's syslog(3) sends there.

Remote (ulogpy's own): a real rsyslogd started by the test (private config,
imtcp and imudp on a random loopback port of the namespace, mmpstrucdata
and a template writing the parsed header fields and structured data to a
file) gets RFC 5424 messages; rsyslog is stopped while packets go on and
started again: the spooling tcp output delivers every message, in order; the
drop-oldest one with a tiny queue delivers the rest and counts each drop.
"""

from __future__ import annotations

import json
import random
import re
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.compare import CLOCK_TOLERANCE_S
from tests.netns import Netns, icmp_echo, tcp_echo, udp_echo, wait_until
from tests.ulogd_ref import ULOGD_BIN, ULOGPY, UlogdProcess

pytestmark = [pytest.mark.live, pytest.mark.ulogd]

GROUPS = {"ulogd": 61, "ulogpy": 62}
CONF = """\
[global]
loglevel=3
stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,print1:PRINTPKT,sys1:SYSLOG
stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,print1:PRINTPKT,sys2:SYSLOG
[log1]
group={group}
[sys1]
[sys2]
facility=LOG_LOCAL3
level=LOG_INFO
"""
RULES = """
table inet ulogpy_syslog {
    chain out {
        type filter hook output priority filter; policy accept;
        meta l4proto { tcp, udp, icmp, ipv6-icmp } log prefix "lo out: " group 61 \
log prefix "lo out: " group 62
    }
}
"""
#: daemon.notice (LOG_KERN is 0: glibc uses openlog's LOG_DAEMON), local3.info
PRIORITIES = (3 * 8 + 5, 19 * 8 + 6)
#: Runs the daemon with its arguments and a private /dev whose `log` links to the test's
#: socket; the tmpfs is mounted on an empty directory of the test, then moved onto /dev.
PRIVATE_DEV = """#!/bin/sh
exec unshare -m --propagation private sh -c '
set -e
d={mnt}
mount -t tmpfs -o size=64k,mode=0755 ulogpy-dev "$d"
for n in null zero full random urandom tty; do
    touch "$d/$n"; mount --bind "/dev/$n" "$d/$n"
done
ln -s /proc/self/fd "$d/fd"
ln -s {sock} "$d/log"
mount --move "$d" /dev
exec {binary} "$@"' sh "$@"
"""
MESSAGE = re.compile(rb"<(\d+)>([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) ulogd\[(\d+)\]: (.*)\Z",
                     re.S)
#: nfnetlink_log sends a group's queued packets at least this often (kernel default 1 s).
FLUSH_TIMEOUT_S = 1.5


def private_dev(tmp_path: Path, sock: Path, binary: str | Path, name: str) -> Path:
    """A wrapper that runs `binary` with its arguments and a private /dev (PRIVATE_DEV)."""
    mnt = tmp_path / f"dev-{name}"
    mnt.mkdir()
    wrapper = tmp_path / f"{name}-private-dev.sh"
    wrapper.write_text(PRIVATE_DEV.format(mnt=mnt, sock=sock, binary=binary))
    wrapper.chmod(0o755)
    return wrapper


class Collector:
    """The test's /dev/log: a datagram socket read in a thread of its own, all the time,
    as a syslog daemon reads (a full socket would make the senders wait, and their
    clocks would drift apart); `got` holds every datagram, in arrival order."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.got: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.got.append(self.sock.recv(65536))
            except TimeoutError:
                continue

    def __enter__(self) -> Collector:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def traffic(ns: Netns) -> None:
    for addr in ("127.0.0.1", "::1"):
        icmp_echo(ns, addr)
        tcp_echo(ns, ns, addr)
        udp_echo(ns, ns, addr)


def by_sender(datagrams: list[bytes], pid: int) -> dict[int, list[tuple[float, bytes]]]:
    """{priority: [(time, message)]} of the datagrams sent by `pid`."""
    out: dict[int, list[tuple[float, bytes]]] = {p: [] for p in PRIORITIES}
    year = datetime.now().year
    for data in datagrams:
        m = MESSAGE.match(data)
        assert m, data
        if int(m.group(3)) != pid:
            continue
        when = datetime.strptime(f"{year} {m.group(2).decode()}", "%Y %b %d %H:%M:%S")
        out.setdefault(int(m.group(1)), []).append((when.timestamp(), m.group(4)))
    return out


def test_datagrams_like_ulogd(tmp_path: Path) -> None:
    sock_path = tmp_path / "devlog.sock"
    with Collector(sock_path) as collector, Netns("syslog") as ns:
        got = collector.got
        ns.nft(RULES)
        ulogd, ulogpy = (
            UlogdProcess(ns, CONF.format(group=GROUPS[name]), tmp_path / name,
                         binary=private_dev(tmp_path, sock_path, real, name))
            for name, real in (("ulogd", ULOGD_BIN), ("ulogpy", ULOGPY))
        )
        with ulogd, ulogpy:
            traffic(ns)
            time.sleep(FLUSH_TIMEOUT_S)

            def settled() -> bool:
                mine, theirs = by_sender(got, ulogpy.pid), by_sender(got, ulogd.pid)
                return all(len(mine[p]) == len(theirs[p]) >= 20 for p in PRIORITIES)

            wait_until(settled, timeout=15, interval=0.3, what="both daemons' messages")
            time.sleep(0.5)
            assert ulogpy.stop() == 0
        mine, theirs = by_sender(got, ulogpy.pid), by_sender(got, ulogd.pid)
        assert set(mine) == set(theirs) == set(PRIORITIES)
        for pri in PRIORITIES:
            assert [m for _t, m in mine[pri]] == [m for _t, m in theirs[pri]], pri
            for (t1, _m), (t2, _n) in zip(mine[pri], theirs[pri], strict=True):
                assert abs(t1 - t2) <= CLOCK_TOLERANCE_S
        sample = theirs[PRIORITIES[0]][0][1]
        assert sample.startswith(b"lo out:  IN= OUT=lo ") and sample.endswith(b"\n")
        assert "Traceback" not in ulogpy.log_text()


BAD_CONF = """\
[global]
loglevel=3
stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,print1:PRINTPKT,sys1:SYSLOG
[log1]
group=63
[sys1]
"""


@pytest.mark.parametrize(("option", "value"), [("facility", "LOG_FOO"), ("level", "notice")])
def test_bad_facility_or_level_stops_start_up(tmp_path: Path, option: str, value: str) -> None:
    """ulogd and ulogpy both refuse the stack and exit 1; ulogpy names the option."""
    conf = BAD_CONF + f"{option}={value}\n"
    with Netns("syslogbad") as ns:
        codes = {}
        for name, binary in (("ulogd", ULOGD_BIN), ("ulogpy", ULOGPY)):
            path = tmp_path / f"{name}.conf"
            path.write_text(conf.replace("[global]", f'[global]\nlogfile="{tmp_path}/{name}.log"'))
            r = ns.run([binary, "-c", path], check=False, timeout=30)
            codes[name] = (r.returncode, r.stdout + r.stderr)
        assert codes["ulogd"][0] == codes["ulogpy"][0] == 1
        own_log = tmp_path / "ulogpy.log"  # config errors come before the log opens
        text = codes["ulogpy"][1] + (own_log.read_text() if own_log.exists() else "")
        assert f"unknown {option} '{value}'" in text
        assert f"unknown {option} '{value}'" in (tmp_path / "ulogd.log").read_text()
        assert option in text and "LOG_" in text and "Traceback" not in text


ABSENT_CONF = """\
[global]
loglevel=3
stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,print1:PRINTPKT,sys1:SYSLOG
stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,print1:PRINTPKT,emu1:LOGEMU
[log1]
group=62
[sys1]
[emu1]
file="{d}/emu.log"
sync=1
"""


def test_syslog_daemon_absent_at_start_loses_nothing(tmp_path: Path) -> None:
    """syslog(3) drops what it cannot send; ulogpy keeps it until the socket is there.
    Its LOGEMU stack on the same packets says how many there were and what they say."""
    sock_path = tmp_path / "devlog.sock"
    with Netns("syslogabsent") as ns:
        ns.nft(RULES)
        ulogpy = UlogdProcess(ns, ABSENT_CONF.format(d=tmp_path), tmp_path / "run",
                              binary=private_dev(tmp_path, sock_path, ULOGPY, "ulogpy"))
        with ulogpy:
            traffic(ns)
            time.sleep(FLUSH_TIMEOUT_S)
            emu = wait_until(lambda: _lines(tmp_path / "emu.log", 20), what="LOGEMU lines")
            assert "can't connect to /dev/log" in ulogpy.log_text()
            with Collector(sock_path) as collector:
                got = collector.got

                def arrived() -> bool:
                    return len(got) >= len(emu)

                wait_until(arrived, timeout=20, interval=0.2, what="the kept messages")
                time.sleep(0.3)
            assert ulogpy.stop() == 0
        texts = [m for _t, m in by_sender(got, ulogpy.pid)[PRIORITIES[0]]]
        assert len(got) == len(texts) == len(emu)
        # LOGEMU's line is `Mmm dd HH:MM:SS host <print>`: the same print text.
        assert [t.decode() for t in texts] == [line[16:].split(" ", 1)[1] for line in emu]
        assert "Traceback" not in ulogpy.log_text()


def _lines(path: Path, at_least: int) -> list[str] | None:
    try:
        lines = path.read_text().splitlines(keepends=True)
    except FileNotFoundError:
        return None
    return lines if len(lines) >= at_least else None


RSYSLOG_CONF = """\
global(workDirectory="{d}")
module(load="imtcp")
module(load="imudp")
module(load="mmpstrucdata")
template(name="fields" type="string"
         string="%inputname%|%pri%|%timereported:::date-rfc3339%|%hostname%|%app-name%|\
%procid%|%msgid%|%$!rfc5424-sd%|%msg%\\n")
ruleset(name="remote") {{
    action(type="mmpstrucdata")
    action(type="omfile" file="{d}/received.log" template="fields")
}}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="remote")
input(type="imudp" address="127.0.0.1" port="{port}" ruleset="remote")
"""
REMOTE_CONF = """\
[global]
loglevel=3
stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,print1:PRINTPKT,emu1:LOGEMU
stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,print1:PRINTPKT,spooled:SYSLOG
stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,print1:PRINTPKT,dropping:SYSLOG
stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,print1:PRINTPKT,udp:SYSLOG
[log1]
group=62
[emu1]
file="{d}/emu.log"
sync=1
[spooled]
protocol=tcp
port={port}
hostname=spooled
facility=LOG_LOCAL5
level=LOG_WARNING
queue_size=10
queue_policy=spool
spool_dir="{d}/spool"
[dropping]
protocol=tcp
port={port}
hostname=dropping
queue_size=5
[udp]
protocol=udp
port={port}
hostname=udp
"""


#: RULES, less the syslog traffic itself and the ICMP errors udp gets while rsyslog is
#: down (logging them would log the logging, forever).
REMOTE_RULES = RULES.replace(
    "        meta l4proto { tcp, udp, icmp, ipv6-icmp } log",
    "        th dport {port} return\n        th sport {port} return\n"
    "        icmp type destination-unreachable return\n"
    "        icmpv6 type destination-unreachable return\n"
    "        meta l4proto { tcp, udp, icmp, ipv6-icmp } log")


class Rsyslog:
    """A real rsyslogd of the test's own in `ns`: tcp and udp on 127.0.0.1:`port`."""

    def __init__(self, ns: Netns, d: Path, port: int) -> None:
        self.ns, self.d, self.port = ns, d, port
        self.conf = d / "rsyslog.conf"
        self.conf.write_text(RSYSLOG_CONF.format(d=d, port=port))
        self.proc: subprocess.Popen | None = None

    def start(self) -> Rsyslog:
        self.proc = self.ns.popen(["rsyslogd", "-n", "-f", self.conf, "-i", self.d / "pid"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: self.ns.run(["ss", "-Hltn", f"sport = :{self.port}"]).stdout,
                   what="rsyslogd listening")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def lines(self, host: str) -> list[list[str]]:
        try:
            text = (self.d / "received.log").read_text()
        except FileNotFoundError:
            return []
        rows = [line.split("|", 8) for line in text.splitlines()]
        return [r for r in rows if r[3] == host]


def _counters(log: str, inst: str) -> dict[str, int]:
    m = re.search(rf"counters {inst}:SYSLOG: (.*)", log)
    assert m, log
    return {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


def test_remote_rfc5424_to_rsyslog_with_outage(tmp_path: Path) -> None:
    port = random.randint(20000, 60000)
    with Netns("syslogremote") as ns:
        ns.nft(REMOTE_RULES.replace("{port}", str(port)))
        rsyslog = Rsyslog(ns, tmp_path, port).start()
        ulogpy = UlogdProcess(ns, REMOTE_CONF.format(d=tmp_path, port=port),
                              tmp_path / "run", binary=ULOGPY)
        try:
            with ulogpy:
                traffic(ns)
                time.sleep(FLUSH_TIMEOUT_S)
                emu = wait_until(lambda: _lines(tmp_path / "emu.log", 20), what="LOGEMU")
                for host in ("spooled", "udp"):
                    wait_until(lambda host=host: len(rsyslog.lines(host)) == len(emu),
                               what=f"{host} messages")
                phase1 = len(emu)
                _check_fields(rsyslog.lines("spooled"), emu, "imtcp", 21 * 8 + 4,
                              ulogpy.pid)
                _check_fields(rsyslog.lines("udp"), emu, "imudp", 3 * 8 + 5, ulogpy.pid)

                # rsyslog stops; packets go on; it comes back on the same port.
                rsyslog.stop()
                for _ in range(3):
                    traffic(ns)
                time.sleep(FLUSH_TIMEOUT_S)
                emu = wait_until(lambda: _lines(tmp_path / "emu.log", phase1 + 60),
                                 what="LOGEMU during the outage")
                time.sleep(0.5)
                rsyslog.start()
                wait_until(lambda: len(rsyslog.lines("spooled")) == len(emu), timeout=40,
                           interval=0.3, what="every spooled message")
                time.sleep(1.0)
                assert ulogpy.stop() == 0
        finally:
            rsyslog.stop()
        log = ulogpy.log_text()
        assert "Traceback" not in log
        # udp has no delivery to confirm: what went out while rsyslog was down is lost
        # on the way (written means sent), as with any syslog over udp.
        assert len(rsyslog.lines("udp")) == phase1
        spooled = _counters(log, "spooled")
        assert spooled["written"] == len(emu) and spooled.get("dropped", 0) == 0
        assert spooled["spooled"] > 0 and spooled["replayed"] > 0
        _check_fields(rsyslog.lines("spooled"), emu, "imtcp", 21 * 8 + 4, ulogpy.pid)
        # queue_size=5 during the outage: all but the newest five dropped, each counted.
        dropping = _counters(log, "dropping")
        delivered = rsyslog.lines("dropping")
        assert dropping["dropped"] > 0
        assert len(delivered) + dropping["dropped"] == len(emu) == dropping["written"] + \
            dropping["dropped"]
        # What arrived is what was logged, in order, less the dropped ones.
        texts = iter(line[16:].split(" ", 1)[1].strip() for line in emu)
        assert all(any(row[8].strip() == t for t in texts) for row in delivered)
        _check_fields(delivered, delivered_lines(delivered, emu), "imtcp", 3 * 8 + 5,
                      ulogpy.pid)


def delivered_lines(rows: list[list[str]], emu: list[str]) -> list[str]:
    """The LOGEMU lines of the messages that arrived (in order; each text once)."""
    out, pos = [], 0
    for row in rows:
        while emu[pos][16:].split(" ", 1)[1].strip() != row[8].strip():
            pos += 1
        out.append(emu[pos])
        pos += 1
    return out


def _check_fields(rows: list[list[str]], emu: list[str], inputname: str, pri: int,
                  pid: int) -> None:
    """Each message as rsyslog parsed it: header fields, structured data, text."""
    assert len(rows) == len(emu)
    for row, line in zip(rows, emu, strict=True):
        name, prio, stamp, _host, app, procid, msgid, sd, msg = row
        text = line[16:].split(" ", 1)[1].rstrip("\n")
        assert (name, int(prio), app, int(procid), msgid) == (inputname, pri, "ulogd", pid, "-")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|\+00:00)", stamp), stamp
        assert msg.strip() == text.strip()
        params = json.loads(sd)["ulogd@32473"]
        fields = dict(kv.split("=", 1) for kv in text.split() if "=" in kv)
        assert params["prefix"] == "lo out: "
        assert params["out"] == "lo"
        assert params["src"] == fields["SRC"] and params["dst"] == fields["DST"]
        if "SPT" in fields:
            assert (params["spt"], params["dpt"]) == (fields["SPT"], fields["DPT"])
        assert params["proto"] == {"TCP": "6", "UDP": "17", "ICMP": "1",
                                   "ICMPv6": "58"}[fields["PROTO"]]


GLIBC_SYSLOG = """\
import syslog
syslog.openlog("ulogd", syslog.LOG_PID | syslog.LOG_NDELAY, syslog.LOG_DAEMON)
for text in ("one\\n", "two \\u00e9"):
    syslog.syslog(syslog.LOG_KERN | syslog.LOG_NOTICE, text)
"""
OUR_SYSLOG = """\
import os, time
from ulogpy.plugins.output import rfc5424
from ulogpy.plugins.output.syslog import DevLogSink
sink = DevLogSink()
sink.open()
pri = rfc5424.priority("LOG_KERN", "LOG_NOTICE")
head = rfc5424.local_header(pri, "ulogd", os.getpid(), time.time())
assert sink.write([head + "one\\n", head + "two \\u00e9"]) == 2
sink.close()
"""


def test_stream_dev_log_like_glibc(tmp_path: Path) -> None:
    """A /dev/log that is a stream socket (glibc falls back to it): each message ends with
    a NUL, as glibc's syslog(3) sends it (here through Python's syslog module)."""
    sock_path = tmp_path / "devlog.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    server.listen(4)
    server.settimeout(10)
    streams = {}
    with server:
        for name, script in (("glibc", GLIBC_SYSLOG), ("ulogpy", OUR_SYSLOG)):
            wrapper = private_dev(tmp_path, sock_path, sys.executable, name)
            proc = subprocess.Popen([wrapper, "-c", script])
            conn, _ = server.accept()
            with conn:
                conn.settimeout(10)
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
            assert proc.wait(timeout=10) == 0
            streams[name] = re.sub(rb"(<29>)[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d ulogd\[\d+\]",
                                   rb"\1TIME ulogd[PID]", data)
    assert streams["glibc"].count(b"\0") == 2
    assert streams["ulogpy"] == streams["glibc"]
