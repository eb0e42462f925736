"""ulogpy's /metrics, scraped by the real Prometheus (Debian's /usr/bin/prometheus).

One private namespace holds everything: conntrack tracks only its UDP (TCP is
`notrack`, so neither the scrapes nor the API queries make flows of their own),
ulogpy with two NFCT instances and `metrics_listen` on the namespace's loopback, and
Prometheus scraping it every second, with a private config and storage directory.
What Prometheus stored is then checked against what ulogpy wrote: the events ct1
emitted are the lines of its JSON file, the records json1 wrote are those lines too,
and ct2, with a socket buffer too small for a burst while the daemon is stopped,
shows the overruns in ulogpy_events_lost_total.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.netns import Netns, udp_burst, wait_until
from tests.ulogd_ref import ULOGPY, UlogdProcess, read_lines

pytestmark = [pytest.mark.live]
PROMETHEUS = Path("/usr/bin/prometheus")

RULESET = """
table inet t {
    chain raw_out { type filter hook output priority raw; meta l4proto tcp notrack; }
    chain raw_pre { type filter hook prerouting priority raw; meta l4proto tcp notrack; }
    chain out { type filter hook output priority 0; ct state new counter; }
}
"""

CONF = """\
[global]
loglevel=3
stats_interval=0
metrics_listen="127.0.0.1:{port}"
stack=ct1:NFCT,ip2str1:IP2STR,json1:JSON
stack=ct2:NFCT,ip2str2:IP2STR,json2:JSON
[ct1]
hash_enable=0
event_mask=5
[ct2]
hash_enable=0
event_mask=5
netlink_socket_buffer_size=4096
netlink_socket_buffer_maxsize=4096
netlink_resync_timeout=3600
[json1]
file="{d}/ct1.json"
sync=1
[json2]
file="{d}/ct2.json"
sync=1
"""

SCRAPE = """\
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: ulogpy
    # ulogpy's own `instance` label (the plugin instance) wins over the target's.
    honor_labels: true
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""

QUERY = """
import json, sys, urllib.parse, urllib.request
url = sys.argv[1] + "/api/v1/query?" + urllib.parse.urlencode({"query": sys.argv[2]})
print(json.dumps(json.load(urllib.request.urlopen(url, timeout=5))))
"""


class Prometheus:
    """Debian's Prometheus inside `ns`, on loopback, with its own config and storage."""

    def __init__(self, ns: Netns, tmp: Path, target_port: int) -> None:
        self.ns = ns
        self.port = random.randrange(20000, 30000)
        self.url = f"http://127.0.0.1:{self.port}"
        config = tmp / "prometheus.yml"
        config.write_text(SCRAPE.format(port=target_port))
        self.log = open(tmp / "prometheus.log", "wb")
        self.proc = ns.popen([PROMETHEUS, f"--config.file={config}",
                              f"--storage.tsdb.path={tmp / 'tsdb'}",
                              f"--web.listen-address=127.0.0.1:{self.port}",
                              "--log.level=warn"],
                             stdout=self.log, stderr=subprocess.STDOUT)

    def query(self, expr: str) -> dict[tuple, float]:
        """Instant query: {sorted label items without __name__/job: value}."""
        r = self.ns.python(["-c", QUERY, self.url, expr], check=False)
        if r.returncode:
            return {}
        answer = json.loads(r.stdout)
        return {tuple(sorted((k, v) for k, v in s["metric"].items()
                             if k not in ("__name__", "job"))): float(s["value"][1])
                for s in answer["data"]["result"]}

    def value(self, expr: str) -> float | None:
        found = self.query(expr)
        return next(iter(found.values())) if len(found) == 1 else None

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
def ns(live_ok):
    if not PROMETHEUS.exists():
        pytest.skip("needs Debian's prometheus package")
    with Netns("metrics") as n:
        n.nft(RULESET)
        yield n


def test_prometheus_scrapes_ulogpy_counters(ns: Netns, tmp_path: Path) -> None:
    metrics_port = random.randrange(30000, 40000)
    conf = CONF.format(port=metrics_port, d=tmp_path)
    with UlogdProcess(ns, conf, tmp_path / "run", binary=ULOGPY) as daemon:
        prom = Prometheus(ns, tmp_path, metrics_port)
        try:
            wait_until(lambda: prom.value('up{job="ulogpy"}') == 1.0, timeout=30,
                       interval=0.5, what="Prometheus scraping ulogpy")
            udp_burst(ns, "127.0.0.1", 20000, 10, vary="sport")
            ns.run(["conntrack", "-F"])
            wait_until(lambda: len(read_lines(tmp_path / "ct1.json")) == 20, timeout=10,
                       what="NEW and DESTROY of the 10 flows in ct1.json")
            # A burst while the daemon cannot read: ct2's 8 KiB buffer overflows,
            # ct1's default one (256 MiB) takes it all.
            daemon.send_signal(signal.SIGSTOP)
            try:
                udp_burst(ns, "127.0.0.1", 30000, 300, vary="sport")
                ns.run(["conntrack", "-F"])
            finally:
                daemon.send_signal(signal.SIGCONT)
            lines = lambda: len(read_lines(tmp_path / "ct1.json"))  # noqa: E731
            wait_until(lambda: lines() == 620, timeout=15, what="every event in ct1.json")

            def scraped(expr: str, want: float) -> bool:
                return prom.value(expr) == want

            wait_until(lambda: scraped('ulogpy_events_total{instance="ct1"}', lines()),
                       timeout=15, interval=0.5, what="ct1's events in Prometheus")
            wait_until(lambda: scraped('ulogpy_records_written_total{instance="json1"}',
                                       lines()),
                       timeout=15, interval=0.5, what="json1's records in Prometheus")
            overruns = wait_until(
                lambda: prom.value('ulogpy_events_lost_total{instance="ct2",'
                                   'reason="overruns"}'),
                timeout=15, interval=0.5, what="ct2's overruns in Prometheus")
            ct2_lines = len(read_lines(tmp_path / "ct2.json"))
            ct2_events = prom.value('ulogpy_events_total{instance="ct2"}')
            ct1_lost = prom.query('sum by (reason) '
                                  '(ulogpy_events_lost_total{instance="ct1"})')
            build = prom.query("ulogpy_build_info")
            rss = prom.value('process_resident_memory_bytes{job="ulogpy"}')
        finally:
            prom.close()
    records = [json.loads(line) for line in read_lines(tmp_path / "ct1.json")]
    assert {(r["orig.l4.sport"], r["ct.event"]) for r in records} == {
        (port, event) for port in [*range(20000, 20010), *range(30000, 30300)]
        for event in (1, 4)}
    assert overruns is not None and overruns >= 1
    assert ct2_lines < 620 and ct2_events == ct2_lines  # ct2 lost what it counts
    assert ct1_lost and all(v == 0 for v in ct1_lost.values()), ct1_lost
    assert {dict(k)["version"] for k in build} == {_version()}
    assert rss and rss > 0


def _version() -> str:
    out = subprocess.run([ULOGPY, "-V"], capture_output=True, text=True).stdout
    return out.split()[2]


@pytest.mark.parametrize("value", ["localhost", "1.2.3.4:0", "::1:9077", "h:99999"])
def test_bad_metrics_listen_is_refused(tmp_path: Path, value: str) -> None:
    conf = tmp_path / "u.conf"
    conf.write_text(CONF.format(port=1, d=tmp_path).replace("127.0.0.1:1", value))
    r = subprocess.run([ULOGPY, "--check", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "metrics_listen" in r.stderr and "HOST:PORT" in r.stderr
    r = subprocess.run([ULOGPY, "--metrics-listen", value, "--check", "-c", str(conf)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "--metrics-listen" in r.stderr, r.stderr


def test_port_in_use_is_a_start_error(ns: Netns, tmp_path: Path) -> None:
    port = random.randrange(40000, 50000)
    holder = ns.popen([sys.executable, "-c", "import socket,time\ns=socket.socket()\n"
                       f"s.bind(('127.0.0.1',{port}))\ns.listen()\nprint('up',flush=True)\n"
                       "time.sleep(60)"], stdout=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdout.readline()
    conf = tmp_path / "u.conf"
    conf.write_text(CONF.format(port=port, d=tmp_path))
    r = ns.run([ULOGPY, "-c", conf], check=False)
    holder.kill()
    holder.wait()
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"metrics_listen 127.0.0.1:{port}: Address already in use" in r.stderr


FETCH = """
import sys, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())
except OSError as exc:
    print("refused", exc)
"""


@pytest.mark.parametrize("flag", ["127.0.0.1:{other}", ""])
def test_command_line_overrides_the_config(ns: Netns, tmp_path: Path, flag: str) -> None:
    port, other = random.sample(range(40000, 50000), 2)
    conf = CONF.format(port=port, d=tmp_path)
    args = ["--metrics-listen", flag.format(other=other)]
    with UlogdProcess(ns, conf, tmp_path / "run", binary=ULOGPY, args=args):
        configured = ns.python(["-c", FETCH, f"http://127.0.0.1:{port}/metrics"]).stdout
        given = ns.python(["-c", FETCH, f"http://127.0.0.1:{other}/metrics"]).stdout
    assert configured.startswith("refused")
    if flag:
        assert 'ulogpy_events_total{instance="ct1",plugin="NFCT"}' in given
    else:
        assert given.startswith("refused")
