"""nat-lookup on a database the real ulogd 2.0.8 wrote, found without `?table=`.

Debian's example ulogd.conf names the SQLite flow table `ulog_ct`.  Here that table has
ulogd's `ct` columns with text addresses (stack NFCT, IP2STR, SQLITE3, as an admin who
wants the NAT side creates it), ulogd logs real NAT traffic into it, and `nat-lookup
--source sqlite:///...` (no `?table=`) finds the table by its columns and names the
inside host.  A second matching table makes the lookup name both.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest

from tests.live.test_clickhouse_cluster import CLIENT, PORT, SERVER, all_gone, seen
from tests.netns import NatTopology, wait_until
from tests.ulogd_ref import UlogdProcess, read_lines
from ulogpy.tools.natlookup.cli import main as nat_lookup

pytestmark = [pytest.mark.live]

COLUMNS = ("orig_ip_saddr_str TEXT, orig_ip_daddr_str TEXT, orig_ip_protocol INTEGER, "
           "orig_l4_sport INTEGER, orig_l4_dport INTEGER, orig_raw_pktlen INTEGER, "
           "reply_ip_saddr_str TEXT, reply_ip_daddr_str TEXT, reply_l4_sport INTEGER, "
           "reply_l4_dport INTEGER, reply_raw_pktlen INTEGER, ct_mark INTEGER, ct_id INTEGER, "
           "ct_event INTEGER, flow_start_sec INTEGER, flow_start_usec INTEGER, "
           "flow_end_sec INTEGER, flow_end_usec INTEGER")
CONF = """\
[global]
loglevel=5
stack=ct1:NFCT,ip2str1:IP2STR,sqlite3_ct:SQLITE3
[ct1]
hash_enable=0
event_mask=5
[sqlite3_ct]
table="ulog_ct"
db="{db}"
buffer=1
"""


def test_ulogd_sqlite_table_found_by_its_columns(live_ok, tmp_path: Path, capsys) -> None:
    db = tmp_path / "ulogd.sqlite3db"
    conn = sqlite3.connect(db)
    conn.execute(f"CREATE TABLE ulog_ct ({COLUMNS})")
    conn.execute("CREATE TABLE ulog_pkt (raw_pktlen INTEGER, oob_prefix TEXT)")
    conn.commit()
    conn.close()
    with NatTopology(fw_sysctls={"net.netfilter.nf_conntrack_timestamp": 1}) as topo:
        out = tmp_path / "server.jsonl"
        with open(out, "w") as f:
            topo.wan.popen([sys.executable, "-c", SERVER, topo.wan_ip4, str(PORT)], stdout=f)
        wait_until(lambda: read_lines(out), 10, what="server ready")
        with UlogdProcess(topo.fw, CONF.format(db=db), tmp_path / "ulogd"):
            topo.lan.run([sys.executable, "-c", CLIENT, topo.wan_ip4, str(PORT), "0", "3",
                          "0.05"], timeout=30)
            all_gone(topo)

            def destroys() -> int:
                c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
                try:
                    return c.execute("SELECT count(*) FROM ulog_ct WHERE ct_event = 4"
                                     ).fetchone()[0]
                finally:
                    c.close()
            wait_until(lambda: destroys() >= 3, 15, what="ulogd wrote 3 DESTROYs")
    records = seen(out)
    assert len(records) == 3
    for token, rec in records.items():
        code = nat_lookup(["--ip", rec["ip"], "--port", str(rec["port"]), "--at",
                           f"{rec['t']:.6f}", "--source", f"sqlite://{db}", "--json"])
        text, err = capsys.readouterr()
        assert code == 0, err
        first = json.loads(text)[0]
        assert (first["inside_ip"], first["inside_port"]) == (topo.lan_ip4,
                                                             30000 + int(token[1:]))
        assert first["held"] and first["source"] == f"sqlite://{db}"
    # A copy with the same columns: which one is meant is the user's choice.
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE nat_archive AS SELECT * FROM ulog_ct")
    conn.execute("ALTER TABLE ulog_ct RENAME TO flows")
    conn.commit()
    conn.close()
    code = nat_lookup(["--ip", rec["ip"], "--port", str(rec["port"]), "--at",
                       f"{rec['t']:.6f}", "--source", f"sqlite://{db}"])
    err = capsys.readouterr().err
    assert code == 2 and "flows, nat_archive" in err and "?table=" in err
