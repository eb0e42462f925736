"""CLICKHOUSE's URL and options: failover hosts, no password in any message, and clear
errors (exit 1, the plugin, the option and what is valid) for a bad configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_config_errors import assert_clean_error, run_cli
from ulogpy.db.clickhouse_schema import address16, address_text, shard_key, shard_of
from ulogpy.db.clickhouse_uri import ClickHouseUriError, parse_clickhouse_uri


def test_url_hosts_user_and_label() -> None:
    t = parse_clickhouse_uri("clickhouse://ulog:s3cr%40t@ch1,ch2:9440,[fd00::5]/nat?table=flows")
    assert t.hosts == (("ch1", 9000), ("ch2", 9440), ("fd00::5", 9000))
    assert (t.user, t.password, t.database, t.table) == ("ulog", "s3cr@t", "nat", "flows")
    assert "s3cr" not in t.label and t.label == (
        "clickhouse://ulog@ch1:9000,ch2:9440,[fd00::5]:9000/nat?table=flows")
    args = t.client_args()
    assert args["host"] == "ch1" and args["alt_hosts"] == "ch2:9440,[fd00::5]:9000"
    assert parse_clickhouse_uri("clickhouse://h/db").user == "default"


@pytest.mark.parametrize("url, words", [
    ("http://h/db", "not a ClickHouse URL"),
    ("clickhouse://h", "names no database"),
    ("clickhouse://u:topsecret@h:99999/db", "not a port number"),
    ("clickhouse://h/db?tbl=x", r"only \?table=NAME"),
    ("clickhouse://h/db?table=a;drop", "letters, digits and _"),
    ("clickhouse://h,/db", "a host is missing"),
])
def test_bad_urls(url: str, words: str) -> None:
    with pytest.raises(ClickHouseUriError, match=words) as err:
        parse_clickhouse_uri(url)
    assert "topsecret" not in str(err.value)


def test_addresses_and_shards() -> None:
    v4 = address16(bytes([198, 51, 100, 7]))
    assert v4 == bytes(10) + b"\xff\xff" + bytes([198, 51, 100, 7])
    assert address_text(v4) == "198.51.100.7"
    assert address_text(address16(bytes.fromhex("fd00" + "00" * 13 + "05"))) == "fd00::5"
    assert shard_key(v4) == (198 << 24) + (51 << 16) + (100 << 8) + 7
    # Consecutive pool addresses alternate over two equal shards; weights make ranges.
    assert [shard_of(address16(bytes([198, 51, 100, n])), [1, 1]) for n in range(4)] == [
        0, 1, 0, 1]
    # Weights 2 and 1: key % 3 in {0, 1} is the first shard, 2 the second (Distributed).
    keys = [shard_key(address16(bytes([198, 51, 100, n]))) for n in range(6)]
    assert [shard_of(address16(bytes([198, 51, 100, n])), [2, 1]) for n in range(6)] == [
        0 if k % 3 < 2 else 1 for k in keys]


@pytest.mark.parametrize("section, fragments", [
    ('url="clickhouse://u:hunter2@h/"', ("ch1", "url", "names no database")),
    ('url="clickhouse://h/db"\nqueue_policy="later"', ("queue_policy", "spool")),
    ('url="clickhouse://h/db"\ntable="a-b"', ("table", "letters, digits and _")),
    ('url="clickhouse://h/db"\nbatch_rows=0', ("batch_rows", "greater than 0")),
    ("", ("ch1", "url")),
])
def test_bad_config_is_a_clear_error(section: str, fragments: tuple, tmp_path: Path) -> None:
    conf = tmp_path / "ulogd.conf"
    conf.write_text(f"[global]\nstack=ct1:NFCT,ch1:CLICKHOUSE\n[ct1]\n[ch1]\n{section}\n")
    message = assert_clean_error(run_cli("--check", "-c", str(conf)), *fragments)
    assert "hunter2" not in message


def test_good_config_passes_check(tmp_path: Path) -> None:
    conf = tmp_path / "ulogd.conf"
    conf.write_text("[global]\nstack=ct1:NFCT,ch1:CLICKHOUSE\n[ct1]\nexact_start=1\n[ch1]\n"
                    'url="clickhouse://ch1,ch2/nat"\ncluster="fleet"\n')
    proc = run_cli("--check", "-c", str(conf))
    assert proc.returncode == 0, proc.stderr


def test_exact_start_has_no_slack() -> None:
    """A reception-time start may be late by up to START_SLACK_S; the kernel's is not."""
    from ulogpy.tools.natlookup.flows import START_SLACK_S, Flow, Query

    def flow(exact: bool) -> Flow:
        return Flow(proto=6, inside_ip="10.0.0.2", inside_port=1, public_ip="192.0.2.1",
                    public_port=2, remote_ip="192.0.2.9", remote_port=80, start=100.0,
                    end=110.0, start_exact=exact)

    q = Query(ip="192.0.2.1", port=2, at=100.0 - START_SLACK_S / 2, window=0.0)
    assert flow(False).matches(q) and flow(False).distance(q.at) == 0
    assert not flow(True).matches(q) and flow(True).distance(q.at) == START_SLACK_S / 2


def test_config_history_includes_clickhouse(tmp_path: Path) -> None:
    """nat-lookup without --source reads a CLICKHOUSE output's table (raw addresses: no
    IP2STR needed), password left out of its label."""
    from ulogpy.tools.natlookup.clickhouse import ClickHouseSource
    from ulogpy.tools.natlookup.sources import config_sources

    conf = tmp_path / "ulogd.conf"
    conf.write_text("[global]\nstack=ct1:NFCT,ch1:CLICKHOUSE\n[ct1]\n[ch1]\n"
                    'url="clickhouse://u:pw@ch1,ch2:9001/nat"\ntable="flows"\n')
    _, sources, notes = config_sources(str(conf))
    assert notes == [] and len(sources) == 1 and isinstance(sources[0], ClickHouseSource)
    assert sources[0].label == "clickhouse://u@ch1:9000,ch2:9001/nat?table=flows"
