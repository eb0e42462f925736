"""The shipped `ulogpy.toml`, run as it is (paths moved into a temporary directory).

It is what `scripts/run` starts on a fresh machine, so it must work on real
traffic: conntrack NEW and DESTROY events to text and JSON, and the packets
firewall rules send to NFLOG group 0 to text (as ulogd's default config
logs them) and JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.netns import NatTopology, conntrack_flush, wait_until
from tests.ulogd_ref import ULOGPY, UlogdProcess, read_lines

pytestmark = [pytest.mark.live]

REPO = Path(__file__).resolve().parents[2]
LOG_RULES = (
    "table inet shipped_log {\n"
    "  chain forward_log {\n"
    "    type filter hook forward priority 0; policy accept;\n"
    '    ct state new log prefix "NEW " group 0\n'
    "  }\n"
    "}\n"
)


def shipped_config(tmp: Path) -> str:
    text = (REPO / "ulogpy.toml").read_text()
    for var in ("/var/log/ulogpy", "/var/lib/ulogpy"):
        text = text.replace(var, str(tmp / var.strip("/").replace("/", "_")))
    return text


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shipped")
    logs = tmp / "var_log_ulogpy"
    with NatTopology() as topo:
        topo.fw.nft(LOG_RULES)
        daemon = UlogdProcess(topo.fw, "", tmp / "run", binary=ULOGPY, add_logfile=False)
        daemon.conf_path = tmp / "run" / "ulogpy.toml"
        daemon.conf_text = shipped_config(tmp)
        daemon.logfile = logs / "ulogpy.log"
        with daemon:
            flows = topo.generate_flows()
            conntrack_flush(topo.fw)
            wait_until(lambda: len(read_lines(logs / "flows.json")) >= 2 * len(flows),
                       timeout=15, what="NEW and DESTROY of every flow")
            wait_until(lambda: len(read_lines(logs / "packets.json")) >= len(flows),
                       timeout=15, what="one NFLOG packet per flow")
            assert daemon.stop() == 0
        yield {name: read_lines(logs / name)
               for name in ("flows.log", "flows.json", "packets.log", "packets.json")}, flows


def test_flows_logged_as_text_and_json(outputs):
    files, flows = outputs
    assert sum(" [NEW] " in ln for ln in files["flows.log"]) == len(flows)
    assert sum(" [DESTROY] " in ln for ln in files["flows.log"]) == len(flows)
    destroys = [r for r in map(json.loads, files["flows.json"]) if r["ct.event"] == 4]
    assert len(destroys) == len(flows)
    assert all(r["orig.raw.pktcount"] > 0 and "flow.end.sec" in r for r in destroys)


def test_group_zero_packets_logged_as_text_and_json(outputs):
    files, flows = outputs
    text = [ln for ln in files["packets.log"] if " NEW  IN=lan0 OUT=wan0 MAC=" in ln]
    assert len(text) == len(flows)
    records = [json.loads(ln) for ln in files["packets.json"]]
    assert len(records) == len(flows)
    for flow, rec in zip(flows, records, strict=True):
        assert (rec["src_ip"], rec["dest_ip"]) == (flow.src, flow.dst)
        assert rec["oob.prefix"] == "NEW " and rec["oob.in"] == "lan0"
        assert "mac.str" in rec
