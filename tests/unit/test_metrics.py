"""The metrics collector and server, scraped over real HTTP and parsed with the
client's own exposition parser: which counter lands in which family, the gauges, and
that a counter bumped after the server started shows in the next scrape (read at
scrape time, not copied at start)."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ulogpy import __version__
from ulogpy.config.load import load_config
from ulogpy.config.model import parse_listen
from ulogpy.core.stack import build_pipeline
from ulogpy.daemon import metrics
from ulogpy.daemon.runner import Runner

CONF = """\
[global]
stack=ct1:NFCT,ip2str1:IP2STR,json1:JSON
stack=ct1:NFCT,ip2str1:IP2STR,print1:PRINTFLOW,emu1:LOGEMU
[ct1]
hash_enable=0
[json1]
file="{d}/out.json"
[emu1]
file="{d}/out.log"
queue_policy="spool"
spool_dir="{d}/spool"
"""


@pytest.fixture
def served(tmp_path):
    conf = tmp_path / "ulogd.conf"
    conf.write_text(CONF.format(d=tmp_path))
    pipeline = build_pipeline(load_config(str(conf)))
    runner = Runner(pipeline, None)
    server = metrics.MetricsServer(("127.0.0.1", 0),
                                   metrics.registry_for(pipeline.instances(), runner.writers))
    try:
        yield pipeline, f"http://{server.address}/metrics"
    finally:
        server.stop()


def _scrape(url: str) -> dict[tuple, float]:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _get(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_counters_land_in_their_families(served) -> None:
    pipeline, url = served
    ct1, ip2str1, json1, ip2str1b, _print1, _emu1 = pipeline.instances()
    assert (ip2str1.id, ip2str1b.id) == ("ip2str1", "ip2str1")  # one per stack
    ct1.counters.tally("emitted").n += 7
    ct1.counters.add("overruns", 2)
    ct1.counters.add("ignored", 3)
    json1.counters.add("written", 5)
    json1.counters.add("dropped", 1)
    json1.counters.add("write_errors", 4)
    # ip2str1 runs once for both stacks (a shared prefix, ulogpy/daemon/prefix.py): both
    # configured instances report that run's counters, as each would count it alone
    assert ip2str1.counters is ip2str1b.counters
    ip2str1.counters.add("failed", 3)
    samples = _scrape(url)
    ct, js = {"instance": "ct1", "plugin": "NFCT"}, {"instance": "json1", "plugin": "JSON"}
    assert _get(samples, "ulogpy_events_total", **ct) == 7
    assert _get(samples, "ulogpy_events_lost_total", reason="overruns", **ct) == 2
    assert _get(samples, "ulogpy_events_lost_total", reason="malformed", **ct) == 0
    assert _get(samples, "ulogpy_events_lost_total", reason="ignored", **ct) is None
    assert _get(samples, "ulogpy_plugin_counter_total", counter="ignored", **ct) == 3
    assert _get(samples, "ulogpy_records_written_total", **js) == 5
    assert _get(samples, "ulogpy_records_dropped_total", reason="dropped", **js) == 1
    # failed attempts are retried, not records lost: only under their own name
    assert _get(samples, "ulogpy_records_dropped_total", reason="write_errors", **js) is None
    assert _get(samples, "ulogpy_plugin_counter_total", counter="write_errors", **js) == 4
    # the two instances of ip2str1 (one per stack) are one series, summed: an event that
    # failed there is lost for both stacks
    assert _get(samples, "ulogpy_records_dropped_total", reason="failed",
                instance="ip2str1", plugin="IP2STR") == 6
    assert _get(samples, "ulogpy_build_info", version=__version__) == 1
    assert _get(samples, "ulogpy_queue_records", instance="emu1", plugin="LOGEMU") == 0
    assert _get(samples, "ulogpy_spool_bytes", instance="emu1", plugin="LOGEMU") == 0
    assert _get(samples, "ulogpy_spool_bytes", **js) is None  # no spool: no series
    assert _get(samples, "process_resident_memory_bytes") > 0
    # one input shared by two stacks is one series
    assert sum(1 for name, _ in samples if name == "ulogpy_events_total") == 1


def test_a_scrape_reads_the_counters_of_now(served) -> None:
    pipeline, url = served
    ct1 = pipeline.instances()[0]
    before = _get(_scrape(url), "ulogpy_events_total", instance="ct1", plugin="NFCT")
    ct1.counters.tally("emitted").n += 1
    after = _get(_scrape(url), "ulogpy_events_total", instance="ct1", plugin="NFCT")
    assert (before, after) == (0, 1)


@pytest.mark.parametrize(("text", "parsed"), [
    ("", None), ("  ", None), ("127.0.0.1:9077", ("127.0.0.1", 9077)),
    ("[::1]:9077", ("::1", 9077)), ("localhost:1", ("localhost", 1)),
])
def test_listen_addresses(text: str, parsed) -> None:
    assert parse_listen(text) == parsed


@pytest.mark.parametrize("text", ["9077", ":9077", "h:0", "h:65536", "h:x", "::1:9077"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(text)
