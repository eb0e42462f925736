"""The periodic counter report: every instance at INFO, and at NOTICE with what grew
when an instance lost something since the last report (a daemon logging only notices
must still say, every interval, that it is losing events)."""

from __future__ import annotations

import logging

from ulogpy.config.load import load_config
from ulogpy.core.stack import build_pipeline
from ulogpy.daemon.ownlog import NOTICE
from ulogpy.daemon.runner import PeriodicReport

CONF = """\
[global]
stack=ct1:NFCT,ip2str1:IP2STR,json1:JSON
[ct1]
hash_enable=0
[json1]
file="{d}/out.json"
"""


def _report(caplog, report: PeriodicReport) -> list[tuple[int, str]]:
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="ulogpy.runner"):
        report()
    return [(r.levelno, r.getMessage()) for r in caplog.records]


def test_losses_since_the_last_report_come_at_notice(tmp_path, caplog) -> None:
    conf = tmp_path / "ulogd.conf"
    conf.write_text(CONF.format(d=tmp_path))
    pipeline = build_pipeline(load_config(str(conf)))
    ct1, _ip2str, json1 = pipeline.instances()
    report = PeriodicReport(pipeline)

    ct1.counters.tally("emitted").n += 10
    assert [level for level, _ in _report(caplog, report)] == [logging.INFO] * 3

    ct1.counters.add("overruns")
    json1.counters.add("dropped", 7)
    ct1.counters.tally("emitted").n += 5
    lines = _report(caplog, report)
    assert (NOTICE, "counters ct1:NFCT: emitted=15 overruns=1 (since the last report: "
                    "overruns +1)") in lines
    assert (NOTICE, "counters json1:JSON: dropped=7 (since the last report: dropped +7)") \
        in lines
    assert sum(level == logging.INFO for level, _ in lines) == 1  # ip2str1 lost nothing

    json1.counters.add("dropped", 2)
    lines = _report(caplog, report)
    assert (NOTICE, "counters json1:JSON: dropped=9 (since the last report: dropped +2)") \
        in lines
    assert [level for level, msg in lines if msg.startswith("counters ct1")] == [logging.INFO]
