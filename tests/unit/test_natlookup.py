"""nat-lookup's model: TIME parsing and zones, NEW/DESTROY merging, port reuse, ranking,
and the command line (arguments, exit status, output).

Records are NFCT JSON lines in the exact layout ulogd 2.0.8 writes (field order and
separators of spec 5.4); `REAL_ULOGD` are lines the real ulogd wrote for one TCP flow
through a masquerading firewall (tests/live/test_nfct_differential.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.ulogd_ref import ULOGPY
from ulogpy.tools.natlookup.cli import main
from ulogpy.tools.natlookup.errors import LookupFailed
from ulogpy.tools.natlookup.flows import DEFAULT_WINDOW, Flow, Query, normalize_ip, rank
from ulogpy.tools.natlookup.jsonlog import record_of
from ulogpy.tools.natlookup.merge import merge
from ulogpy.tools.natlookup.timeparse import parse_json_timestamp, parse_time, rfc3339

PUB = "10.77.2.1"
T0 = 1795729000  # 2026-11-26T21:36:40Z

REAL_ULOGD = [
    '{"timestamp": "2026-11-26T21:42:16", "dvc": "Netfilter", "orig.ip.protocol": 6, '
    '"orig.l4.sport": 32858, "orig.l4.dport": 38409, "orig.raw.pktlen": 0, '
    '"orig.raw.pktcount": 0, "reply.ip.protocol": 6, "reply.l4.sport": 38409, '
    '"reply.l4.dport": 32858, "reply.raw.pktlen": 0, "reply.raw.pktcount": 0, "ct.mark": 0, '
    '"ct.id": 2909633670, "ct.event": 1, "flow.start.sec": 1795729336, '
    '"flow.start.usec": 508573, "oob.family": 2, "oob.protocol": 0, "src_ip": "10.189.1.2", '
    '"dest_ip": "10.189.2.2", "reply.ip.saddr.str": "10.189.2.2", '
    '"reply.ip.daddr.str": "10.189.2.1"}',
    '{"timestamp": "2026-11-26T21:42:17", "dvc": "Netfilter", "orig.ip.protocol": 6, '
    '"orig.l4.sport": 32858, "orig.l4.dport": 38409, "orig.raw.pktlen": 324, '
    '"orig.raw.pktcount": 6, "reply.ip.protocol": 6, "reply.l4.sport": 38409, '
    '"reply.l4.dport": 32858, "reply.raw.pktlen": 225, "reply.raw.pktcount": 4, '
    '"ct.mark": 0, "ct.id": 2909633670, "ct.event": 4, "flow.start.sec": 1795729336, '
    '"flow.start.usec": 508542, "flow.end.sec": 1795729337, "flow.end.usec": 509139, '
    '"oob.family": 2, "oob.protocol": 0, "src_ip": "10.189.1.2", "dest_ip": "10.189.2.2", '
    '"reply.ip.saddr.str": "10.189.2.2", "reply.ip.daddr.str": "10.189.2.1"}',
]


def nfct_line(event: int, *, ct_id: int | None = 1, proto: int = 6,
              inside: tuple[str, int | None] = ("10.77.1.2", 40000),
              remote: tuple[str, int | None] = ("10.77.2.2", 80),
              public: tuple[str, int | None] = (PUB, 40000),
              start: float | None = None, end: float | None = None,
              orig_bytes: int = 0, reply_bytes: int = 0, mark: int = 0,
              stamp: float | None = None) -> str:
    """One NFCT JSON record as ulogd writes it (hash_enable=0 NEW/DESTROY, or hash mode)."""
    family = 10 if ":" in inside[0] else 2
    seen = stamp if stamp is not None else (end if event == 4 and end else start) or T0
    obj: dict = {
        # ulogd: local time, offset left out when it is zero (this is UTC).
        "timestamp": datetime.fromtimestamp(int(seen), UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "dvc": "Netfilter", "orig.ip.protocol": proto,
    }
    if inside[1] is not None:
        obj |= {"orig.l4.sport": inside[1], "orig.l4.dport": remote[1]}
    obj |= {"orig.raw.pktlen": orig_bytes, "orig.raw.pktcount": 1, "reply.ip.protocol": proto}
    if inside[1] is not None:
        obj |= {"reply.l4.sport": remote[1], "reply.l4.dport": public[1]}
    obj |= {"reply.raw.pktlen": reply_bytes, "reply.raw.pktcount": 1, "ct.mark": mark}
    if ct_id is not None:
        obj["ct.id"] = ct_id
    obj["ct.event"] = event
    for name, value in (("start", start), ("end", end)):
        if value is not None:
            obj[f"flow.{name}.sec"] = int(value)
            obj[f"flow.{name}.usec"] = round((value - int(value)) * 1e6)
    obj |= {"oob.family": family, "oob.protocol": 0, "src_ip": inside[0],
            "dest_ip": remote[0], "reply.ip.saddr.str": remote[0],
            "reply.ip.daddr.str": public[0]}
    return json.dumps(obj)


def flows_of(lines: list[str]) -> list[Flow]:
    return merge([record_of(json.loads(line), "test") for line in lines])


def lookup(flows: list[Flow], at: float, port: int | None = 40000, **kw) -> list[Flow]:
    return rank(flows, Query(ip=PUB, port=port, at=at, **kw))


# ------------------------------------------------------------------------------ time


@pytest.fixture
def paris(monkeypatch):
    """Local time is Europe/Paris for the test (CET +01:00, CEST +02:00)."""
    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(("text", "epoch"), [
    ("2026-11-26T21:42:16Z", 1795729336.0),
    ("2026-11-26t21:42:16z", 1795729336.0),
    ("2026-11-26T22:42:16+01:00", 1795729336.0),
    ("2026-11-26T16:42:16.25-05:00", 1795729336.25),
    ("2026-11-26 22:42:16+0100", 1795729336.0),
    ("1795729336", 1795729336.0),
    ("1795729336.5", 1795729336.5),
    ("@1795729336", 1795729336.0),
])
def test_time_with_zone_or_epoch(paris, text: str, epoch: float) -> None:
    """Zoned and epoch times mean the same instant whatever the local zone."""
    parsed = parse_time(text)
    assert parsed.epoch == epoch
    assert parsed.assumed_zone is None


def test_time_without_zone_is_local_and_says_which(paris) -> None:
    winter = parse_time("2026-11-26T22:42:16")
    assert winter.epoch == 1795729336.0
    assert winter.assumed_zone == "CET, UTC+01:00"
    summer = parse_time("2026-07-01T12:00:00")
    assert summer.epoch == datetime(2026, 7, 1, 10, 0, tzinfo=UTC).timestamp()
    assert summer.assumed_zone == "CEST, UTC+02:00"


@pytest.mark.parametrize(("text", "why"), [
    ("2026-03-29T02:30:00", "does not exist"),  # clocks jump 02:00 -> 03:00
    ("2026-10-25T02:30:00", "happens twice"),  # clocks go back 03:00 -> 02:00
])
def test_local_time_made_ambiguous_by_dst_is_refused(paris, text: str, why: str) -> None:
    with pytest.raises(LookupFailed, match=why) as exc:
        parse_time(text)
    assert "give the offset" in str(exc.value)


@pytest.mark.parametrize("text", ["", "yesterday", "2026-11-26X21:42:16",
                                  "2026-13-01T00:00:00Z", "2026-11-26", "21:42:16",
                                  "2026-11-26T25:00:00", "17957293361234567"])
def test_bad_time(text: str) -> None:
    with pytest.raises(LookupFailed, match="--at"):
        parse_time(text)


def test_json_timestamp_without_offset_is_utc(paris) -> None:
    """ulogd leaves the offset out only when it is zero: such a stamp is UTC even when
    the reader's zone is not."""
    assert parse_json_timestamp("2026-11-26T19:41:09") == 1795722069.0
    assert parse_json_timestamp("2026-11-26T19:41:10.250878") == 1795722070.250878
    assert parse_json_timestamp("2023-11-14T23:13:20+0100") == 1700000000.0
    assert parse_json_timestamp("garbage") is None


def test_rfc3339_output() -> None:
    assert rfc3339(1795729336.508542) == "2026-11-26T21:42:16.508542Z"
    assert rfc3339(1795729336) == "2026-11-26T21:42:16.000000Z"
    assert rfc3339(None) is None


# ------------------------------------------------------------------------- merging


def test_real_ulogd_new_and_destroy_are_one_interval() -> None:
    """The start is the earlier of NEW's and DESTROY's (the kernel's start stamp),
    the end and counters are DESTROY's."""
    (flow,) = merge([record_of(json.loads(line), "x") for line in REAL_ULOGD])
    assert (flow.inside_ip, flow.inside_port) == ("10.189.1.2", 32858)
    assert (flow.public_ip, flow.public_port) == ("10.189.2.1", 32858)
    assert (flow.remote_ip, flow.remote_port) == ("10.189.2.2", 38409)
    assert flow.start == pytest.approx(1795729336.508542)
    assert flow.end == pytest.approx(1795729337.509139)
    assert (flow.orig_bytes, flow.reply_bytes, flow.mark) == (324, 225, 0)


def test_records_merge_in_any_file_order() -> None:
    """A DESTROY read before its NEW (rotated files read newest first) still merges."""
    (flow,) = flows_of(REAL_ULOGD[::-1])
    assert flow.end == pytest.approx(1795729337.509139)


def test_new_without_destroy_is_ongoing() -> None:
    (flow,) = flows_of([nfct_line(1, start=T0)])
    assert flow.end is None
    (match,) = lookup([flow], T0 + 86400)
    assert match.distance(T0 + 86400) == 0


def test_hash_mode_record_alone_is_a_flow() -> None:
    (flow,) = flows_of([nfct_line(4, start=T0, end=T0 + 3, orig_bytes=10)])
    assert (flow.start, flow.end, flow.orig_bytes) == (T0, T0 + 3, 10)


def test_same_tuple_reused_is_two_flows_told_apart_by_ct_id() -> None:
    """The same inside host:port to the same server twice: one tuple, two conntrack
    entries (two ct.ids); the second is still open."""
    lines = [nfct_line(1, ct_id=7, start=T0), nfct_line(4, ct_id=7, start=T0, end=T0 + 2),
             nfct_line(1, ct_id=8, start=T0 + 30)]
    flows = flows_of(lines)
    assert sorted((f.start, f.end) for f in flows) == [(T0, T0 + 2), (T0 + 30, None)]
    assert [(f.start, f.end) for f in lookup(flows, T0 + 1)] == [(T0, T0 + 2)]
    assert [(f.start, f.end) for f in lookup(flows, T0 + 40)] == [(T0 + 30, None)]


def test_same_tuple_reused_without_ct_id() -> None:
    """Rows of an SQL table carry no ct.id: time order alone pairs NEW and DESTROY."""
    lines = [nfct_line(1, ct_id=None, start=T0),
             nfct_line(4, ct_id=None, start=T0, end=T0 + 2),
             nfct_line(1, ct_id=None, start=T0 + 30),
             nfct_line(4, ct_id=None, start=T0 + 30, end=T0 + 31)]
    assert sorted((f.start, f.end) for f in flows_of(lines)) == [(T0, T0 + 2),
                                                                 (T0 + 30, T0 + 31)]


def test_lost_destroy_is_closed_by_the_next_flow_of_its_tuple() -> None:
    """Two live conntrack entries never share a tuple: a second NEW proves the first
    flow had ended, even though its DESTROY never reached the log."""
    flows = flows_of([nfct_line(1, ct_id=1, start=T0), nfct_line(1, ct_id=2, start=T0 + 60)])
    assert sorted((f.start, f.end) for f in flows) == [(T0, T0 + 60), (T0 + 60, None)]
    (first,) = lookup(flows, T0 + 100, window=0)
    assert first.start == T0 + 60


def test_records_read_twice_are_one_flow() -> None:
    """Overlapping globs (flows.json and a copy) must not invent a second flow."""
    lines = [nfct_line(1, start=T0), nfct_line(4, start=T0, end=T0 + 2)]
    assert len(flows_of(lines * 2)) == 1
    assert len(flows_of([nfct_line(4, ct_id=None, start=T0, end=T0 + 2)] * 2)) == 1


def test_destroy_without_start_counts_at_its_end() -> None:
    """DESTROY of a flow the hash never saw: start unknown, so the flow is known to hold
    the port only at its end; a flow with a known interval ranks before it."""
    unknown = flows_of([nfct_line(4, ct_id=1, end=T0 + 10)])
    assert unknown[0].start is None
    assert lookup(unknown, T0 + 10, window=0)
    assert not lookup(unknown, T0, window=5)
    known = flows_of([nfct_line(4, ct_id=2, inside=("10.77.1.3", 5000), start=T0 + 5,
                                end=T0 + 20)])
    ranked = lookup(unknown + known, T0 + 10, window=0)
    assert [f.inside_ip for f in ranked] == ["10.77.1.3", "10.77.1.2"]


def test_polling_mode_destroy_ends_at_its_reception_time() -> None:
    """Polling mode emits DESTROY with the start only; the record's timestamp bounds it."""
    (flow,) = flows_of([nfct_line(4, start=T0, stamp=T0 + 50)])
    assert (flow.start, flow.end) == (T0, T0 + 50)


# ------------------------------------------------------------------------- ranking


def reuse_history() -> list[Flow]:
    """Public port 40000 used by .2 over [T0, T0+10], then by .3 over [T0+12, T0+20]."""
    return flows_of([
        nfct_line(1, ct_id=1, start=T0), nfct_line(4, ct_id=1, start=T0, end=T0 + 10),
        nfct_line(1, ct_id=2, inside=("10.77.1.3", 40000), start=T0 + 12),
        nfct_line(4, ct_id=2, inside=("10.77.1.3", 40000), start=T0 + 12, end=T0 + 20),
    ])


@pytest.mark.parametrize(("at", "order"), [
    (T0 + 5, ["10.77.1.2"]),  # the other flow is 7 s away: outside the window
    (T0 + 9, ["10.77.1.2", "10.77.1.3"]),
    (T0 + 10.2, ["10.77.1.2", "10.77.1.3"]),  # .2 ended 0.2 s after, .3 starts 1.8 s later
    (T0 + 11.5, ["10.77.1.3", "10.77.1.2"]),  # within 1 s of .3's logged start: held
    (T0 + 15, ["10.77.1.3", "10.77.1.2"]),
    (T0 + 30, []),
])
def test_reused_port_holder_at_time_first(at: float, order: list[str]) -> None:
    assert [f.inside_ip for f in lookup(reuse_history(), at)] == order


def test_logged_start_is_late_by_the_reception_delay() -> None:
    """NEW records carry their reception time (the kernel stamps only DESTROY), a little
    after the connection began.  A time just before the logged start of the next user of
    a port, after the previous user's (kernel-stamped) end, belongs to the next user; a
    time the previous user's interval really contains stays with the previous one."""
    flows = flows_of([
        nfct_line(1, ct_id=1, start=T0), nfct_line(4, ct_id=1, start=T0, end=T0 + 10),
        nfct_line(1, ct_id=2, inside=("10.77.1.3", 40000), start=T0 + 10.3),
    ])
    after_end = lookup(flows, T0 + 10.29, window=0)
    assert [f.inside_ip for f in after_end] == ["10.77.1.3"]
    assert [f.inside_ip for f in lookup(flows, T0 + 10.29)] == ["10.77.1.3", "10.77.1.2"]
    assert [f.inside_ip for f in lookup(flows, T0 + 9.9)] == ["10.77.1.2", "10.77.1.3"]
    assert [f.inside_ip for f in lookup(flows, T0 + 9.2, window=0)] == ["10.77.1.2"]


def test_window_bounds_the_match() -> None:
    flows = reuse_history()
    assert lookup(flows, T0 + 25, window=5)  # .3 ended at T0+20
    assert not lookup(flows, T0 + 25.5, window=5)
    assert [f.inside_ip for f in lookup(flows, T0 + 10.9, window=0)] == []


def test_two_flows_holding_the_port_newest_start_first() -> None:
    flows = flows_of([
        nfct_line(1, ct_id=1, remote=("10.77.2.2", 80), start=T0),
        nfct_line(1, ct_id=2, inside=("10.77.1.3", 9999), remote=("10.77.2.9", 443),
                  start=T0 + 3),
    ])
    assert [f.inside_ip for f in lookup(flows, T0 + 5)] == ["10.77.1.3", "10.77.1.2"]


def test_remote_and_proto_narrow_concurrent_flows() -> None:
    """Masquerade may give two inside hosts the same public port towards different
    servers at the same time: only the remote tells them apart."""
    flows = flows_of([
        nfct_line(1, ct_id=1, remote=("10.77.2.2", 80), start=T0),
        nfct_line(1, ct_id=2, inside=("10.77.1.3", 9999), remote=("10.77.2.9", 443),
                  start=T0 + 3),
        nfct_line(1, ct_id=3, proto=17, inside=("10.77.1.4", 53), remote=("10.77.2.9", 53),
                  start=T0 + 1),
    ])
    assert len(lookup(flows, T0 + 5)) == 3
    assert [f.inside_ip for f in lookup(flows, T0 + 5, remote_ip="10.77.2.2")] == ["10.77.1.2"]
    assert [f.inside_ip for f in lookup(flows, T0 + 5, remote_ip="10.77.2.9",
                                        remote_port=443)] == ["10.77.1.3"]
    assert [f.inside_ip for f in lookup(flows, T0 + 5, proto=17)] == ["10.77.1.4"]


def test_ipv6_addresses_match_in_any_notation() -> None:
    """The query is normalized (`normalize_ip`); a writer may spell addresses longer."""
    flows = flows_of([nfct_line(1, inside=("fd00:77:1::2", 40000),
                                remote=("fd00:77:2:0:0:0:0:2", 80),
                                public=("fd00:77:2:0::1", 40000), start=T0)])
    q = Query(ip=normalize_ip("FD00:77:2:0:0:0:0:1", "--ip"), port=40000, at=T0 + 1,
              remote_ip=normalize_ip("fd00:77:2::2", "--remote"))
    assert [f.inside_ip for f in rank(flows, q)] == ["fd00:77:1::2"]


def test_icmp_flows_match_on_the_address() -> None:
    flows = flows_of([nfct_line(1, proto=1, inside=("10.77.1.2", None),
                                remote=("10.77.2.2", None), public=(PUB, None), start=T0)])
    assert lookup(flows, T0 + 1, port=None, proto=1)
    assert not lookup(flows, T0 + 1, port=40000)


def test_same_flow_from_two_sources_listed_once_with_the_end() -> None:
    """A config writing JSON and SQLite logs each flow twice; the copy that has seen the
    DESTROY wins over one still open."""
    open_copy = flows_of([nfct_line(1, start=T0 + 0.0003)])
    closed_copy = flows_of([nfct_line(4, ct_id=None, start=T0, end=T0 + 2)])
    ranked = lookup(open_copy + closed_copy, T0 + 1)
    assert [(f.start, f.end) for f in ranked] == [(T0, T0 + 2)]


# ------------------------------------------------------------------------- command line


@pytest.fixture
def history(tmp_path: Path) -> str:
    path = tmp_path / "flows.json"
    lines = [
        nfct_line(1, ct_id=1, start=T0),
        nfct_line(4, ct_id=1, start=T0, end=T0 + 10, orig_bytes=300, reply_bytes=200),
        nfct_line(1, ct_id=2, inside=("10.77.1.3", 51000), start=T0 + 12),
    ]
    path.write_text("\n".join(lines) + "\n")
    return f"json:{path}"


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_json_output(capsys, history: str) -> None:
    code, out, err = run(capsys, "--ip", PUB, "--port", "40000", "--at", str(T0 + 5),
                         "--source", history, "--json")
    assert code == 0 and err == ""
    (match,) = json.loads(out)
    assert match == {
        "inside_ip": "10.77.1.2", "inside_port": 40000, "public_ip": PUB,
        "public_port": 40000, "remote_ip": "10.77.2.2", "remote_port": 80, "proto": "tcp",
        "start": "2026-11-26T21:36:40.000000Z", "end": "2026-11-26T21:36:50.000000Z",
        "orig_bytes": 300, "reply_bytes": 200, "zone": None, "mark": 0,
        "source": history, "held": True, "distance": 0.0,
    }


def test_cli_open_flow_has_null_end_and_ranks_first(capsys, history: str) -> None:
    code, out, _ = run(capsys, "--ip", PUB, "--port", "40000", "--at",
                       "2026-11-26T21:36:53Z", "--source", history, "--json")
    assert code == 0
    first, second = json.loads(out)
    assert (first["inside_ip"], first["inside_port"], first["end"]) == ("10.77.1.3", 51000,
                                                                       None)
    assert (second["inside_ip"], second["held"], second["distance"]) == ("10.77.1.2", False,
                                                                         3.0)


def test_cli_table_output(capsys, history: str) -> None:
    code, out, err = run(capsys, "--ip", PUB, "--port", "40000", "--at", str(T0 + 5),
                         "--source", history)
    assert code == 0 and err == ""
    head, columns, row = out.splitlines()
    assert head == f"1 flow(s) used {PUB}:40000 within 5 s of 2026-11-26T21:36:45.000000Z"
    assert columns.split()[:3] == ["#", "INSIDE", "REMOTE"]
    assert row.split()[:4] == ["1", "10.77.1.2:40000", "10.77.2.2:80", "tcp"]
    assert "held" in row and "300/200" in row


def test_cli_no_flow_exits_1(capsys, history: str) -> None:
    code, out, _ = run(capsys, "--ip", PUB, "--port", "40000", "--at", str(T0 - 60),
                       "--source", history, "--json")
    assert (code, json.loads(out)) == (1, [])
    code, out, _ = run(capsys, "--ip", PUB, "--port", "40001", "--at", str(T0 + 5),
                       "--source", history)
    assert code == 1 and out.startswith("no flow used")


def test_cli_local_time_note_names_the_zone(capsys, paris, history: str) -> None:
    code, out, err = run(capsys, "--ip", PUB, "--port", "40000", "--at",
                         "2026-11-26T22:36:45", "--source", history, "--json")
    assert code == 0 and json.loads(out)[0]["held"]
    assert "no zone: read as local time (CET, UTC+01:00)" in err


@pytest.mark.parametrize(("args", "needle"), [
    (["--at", "soon"], "--at 'soon': not a time"),
    (["--ip", "10.1.2"], "--ip '10.1.2': not an IPv4 or IPv6 address"),
    (["--proto", "tcpx"], "--proto 'tcpx': unknown protocol"),
    (["--remote", "10.0.0.1:99999"], "not a port number"),
    (["--remote", "[fd00::1"], "--remote"),
    (["--source", "oracle://x"], "unknown kind"),
    (["--source", "mysql://x"], "names no database"),
    (["--source", "sqlite://relative.db"], "absolute path"),
    (["--source", "sqlite:///tmp/x.db?table=a;drop"], "not a table name"),
    (["--source", "json:/nonexistent/flows.json"], "no such file /nonexistent/flows.json"),
    (["--source", "json:/nonexistent/*.json"], "no file matches"),
])
def test_cli_bad_input_exits_2(capsys, args: list[str], needle: str) -> None:
    base = {"--ip": PUB, "--port": "40000", "--at": str(T0), "--source": "json:/dev/null"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    code, out, err = run(capsys, *[x for kv in base.items() for x in kv])
    assert code == 2 and out == ""
    assert err.startswith("ulogpy nat-lookup: ") and needle in err
    assert "Traceback" not in err


@pytest.mark.parametrize(("args", "needle"), [
    (["--port", "70000"], "not a port number"),
    (["--window", "-1"], "not a number of seconds"),
    (["--bogus"], "unrecognized arguments"),
])
def test_cli_usage_errors_exit_2(capsys, args: list[str], needle: str) -> None:
    code, _, err = run(capsys, "--ip", PUB, "--port", "1", "--at", "1", *args)
    assert code == 2 and needle in err


def test_cli_port_needed_unless_portless_proto(capsys, history: str) -> None:
    code, _, err = run(capsys, "--ip", PUB, "--at", "1", "--source", history)
    assert code == 2 and "--port is required" in err
    code, _, err = run(capsys, "--ip", PUB, "--port", "7", "--proto", "icmp", "--at", "1",
                       "--source", history)
    assert code == 1 and "--port ignored" in err


def test_installed_command(tmp_path: Path) -> None:
    """Through the `ulogpy` entry point: help states the default window; exit codes."""
    proc = subprocess.run([ULOGPY, "nat-lookup", "--help"], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0
    assert f"default {DEFAULT_WINDOW:g}" in " ".join(proc.stdout.split())
    path = tmp_path / "f.json"
    path.write_text(nfct_line(1, start=T0) + "\n")
    base = [ULOGPY, "nat-lookup", "--ip", PUB, "--port", "40000", "--source", f"json:{path}"]
    for at, code in ((T0 + 1, 0), (T0 - 100, 1)):
        proc = subprocess.run([*base, "--at", str(at)], capture_output=True, text=True,
                              timeout=30, env={**os.environ, "TZ": "UTC"})
        assert proc.returncode == code, proc.stderr
    proc = subprocess.run([*base, "--at", "never"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "not a time" in proc.stderr
