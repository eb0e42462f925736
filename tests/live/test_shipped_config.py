"""The shipped `ulogpy.toml`, run as it is (paths moved into a temporary directory).

It is what `scripts/run` starts on a fresh machine, so it must work on real
traffic: conntrack NEW and DESTROY events to text and JSON, and the packets
firewall rules send to NFLOG group 0 to text (as ulogd's default config
logs them) and JSON.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.netns import NatTopology, conntrack_flush, wait_until
from tests.ulogd_ref import ULOGPY, UlogdProcess, read_lines

pytestmark = [pytest.mark.live]

REPO = Path(__file__).resolve().parents[2]
PROTO_NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}
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
            history = tmp / "var_lib_ulogpy" / "flows.sqlite"
        with sqlite3.connect(history) as db:
            rows = db.execute(
                "SELECT orig_ip_saddr_str, orig_ip_daddr_str, orig_ip_protocol, orig_l4_sport,"
                " reply_ip_daddr_str, flow_start_sec, flow_end_sec FROM ulog2_ct").fetchall()
        files = {name: read_lines(logs / name)
                 for name in ("flows.log", "flows.json", "packets.log", "packets.json")}
        yield files, flows, rows, topo


def test_flows_logged_as_text_and_json(outputs):
    files, flows, _rows, _topo = outputs
    assert sum(" [NEW] " in ln for ln in files["flows.log"]) == len(flows)
    assert sum(" [DESTROY] " in ln for ln in files["flows.log"]) == len(flows)
    destroys = [r for r in map(json.loads, files["flows.json"]) if r["ct.event"] == 4]
    assert len(destroys) == len(flows)
    assert all(r["orig.raw.pktcount"] > 0 and "flow.end.sec" in r for r in destroys)


def test_group_zero_packets_logged_as_text_and_json(outputs):
    files, flows, _rows, _topo = outputs
    text = [ln for ln in files["packets.log"] if " NEW  IN=lan0 OUT=wan0 MAC=" in ln]
    assert len(text) == len(flows)
    records = [json.loads(ln) for ln in files["packets.json"]]
    assert len(records) == len(flows)
    for flow, rec in zip(flows, records, strict=True):
        assert (rec["src_ip"], rec["dest_ip"]) == (flow.src, flow.dst)
        assert rec["oob.prefix"] == "NEW " and rec["oob.in"] == "lan0"
        assert "mac.str" in rec


def test_flow_history_one_row_per_flow_with_its_nat_address(outputs):
    _files, flows, rows, topo = outputs
    assert len(rows) == len(flows)
    for flow in flows:
        proto = PROTO_NUMBERS[flow.ct_proto]
        matching = [r for r in rows if r[:3] == (flow.src, flow.dst, proto)
                    and (flow.sport is None or r[3] == flow.sport)]
        assert len(matching) == 1, (flow, rows)
        (_src, _dst, _proto, _sport, public, start, end) = matching[0]
        assert public == topo.fw_wan_ip(flow.family)  # the address after masquerade
        assert 0 < start <= end
