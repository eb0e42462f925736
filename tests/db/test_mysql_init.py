"""`ulogpy db init --mysql`: on an empty MariaDB database it creates the flow table in
ulogd's layout, INSERT_OR_REPLACE_CT, the `conntrack_events` view and the NAT-lookup
indexes; on a ulogd database it adds only what is missing; a second run changes nothing;
the function gives a flow's NEW and DESTROY one row."""

from __future__ import annotations

import subprocess

from tests.ulogd_ref import ULOGPY

MADE = ["view conntrack_events", "function ULOGPY_ADDR_BIN", "function INSERT_OR_REPLACE_CT",
        "index ulog2_ct_nat_lookup", "index ulog2_ct_flow_start", "index ulog2_ct_flow_end"]
SECRET = "init-pw'x"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ULOGPY, "db", "init", *args], capture_output=True, text=True,
                          timeout=60)


def _created(proc: subprocess.CompletedProcess) -> list[str]:
    return [ln.split(": created ", 1)[1] for ln in proc.stdout.splitlines()
            if ": created " in ln]


def _uri(my, db: str, user: str = "root", password: str = "") -> str:
    from urllib.parse import quote

    cred = user + (":" + quote(password, safe="") if password else "")
    return f"mysql://{cred}@localhost/{db}?socket={my.socket}"


def test_empty_database_gets_the_flow_schema_once(my):
    my.create_db("init_empty")
    first = _run("--mysql", _uri(my, "init_empty"))
    assert first.returncode == 0, first.stderr
    assert _created(first) == ["table ulog2_ct", *MADE]
    again = _run("--mysql", _uri(my, "init_empty"))
    assert again.returncode == 0 and _created(again) == []
    assert "nothing to do" in again.stdout
    index = my.query("init_empty", "SELECT column_name FROM information_schema.statistics "
                     "WHERE table_schema = 'init_empty' AND index_name = "
                     "'ulog2_ct_nat_lookup' ORDER BY seq_in_index")
    assert [r[0] for r in index] == ["reply_ip_daddr", "reply_l4_dport", "flow_start_sec"]


def test_ulogd_database_gets_only_the_missing_objects(my, new_mydb):
    db = new_mydb()
    before = my.query(db, "SELECT COUNT(*) FROM information_schema.columns WHERE "
                          "table_schema = %s", (db,))[0][0]
    proc = _run("--mysql", _uri(my, db))
    assert proc.returncode == 0, proc.stderr
    assert _created(proc) == MADE
    after = my.query(db, "SELECT COUNT(*) FROM information_schema.columns WHERE "
                         "table_schema = %s", (db,))[0][0]
    assert after == before + 24  # the view's columns; no table was touched
    args = ("2, %s, %s, 17, 1000, 53, {b}, 1, %s, %s, 17, 53, 1000, {b}, 1, NULL, NULL, 0, "
            "{s}, 0, {e}, 0, {ev}")
    addrs = ("10.0.0.1", "10.0.0.2", "10.0.0.2", "10.0.0.1")
    my.query(db, "SELECT INSERT_OR_REPLACE_CT(" + args.format(b=0, s=100, e="NULL", ev=1)
             + ")", addrs)
    my.query(db, "SELECT INSERT_OR_REPLACE_CT(" + args.format(b=99, s="NULL", e=105, ev=4)
             + ")", addrs)
    rows = my.query(db, "SELECT flow_start_sec, flow_end_sec, orig_raw_pktlen, ct_event, "
                        "orig_ip_saddr_str, reply_ip_saddr_str FROM conntrack_events")
    assert rows == [(100, 105, 99, 4, "10.0.0.1", "10.0.0.2")]
    # Stored in ulogd's binary(16) layout, IPv4-mapped, as IP2BIN writes it.
    mapped = bytes(10) + b"\xff\xff" + bytes([10, 0, 0, 1])
    assert my.query(db, "SELECT orig_ip_saddr FROM ulog2_ct") == [(mapped,)]


def test_unreachable_server_and_password_never_shown(my):
    my.add_password_user("initpw", SECRET)
    proc = _run("--mysql", _uri(my, "nosuchdb", "initpw", SECRET + "bad"))
    assert proc.returncode == 1
    assert "Access denied" in proc.stderr and "Traceback" not in proc.stderr
    assert SECRET not in proc.stderr and SECRET not in proc.stdout
    bad = _run("--mysql", "mysql://root@localhost/")
    assert bad.returncode == 1 and "names no database" in bad.stderr


def test_nat_lookup_reads_the_mysql_history(my, tmp_path, capsys):
    """What INSERT_OR_REPLACE_CT stored is found by public address and port, through a
    --source URI and through a configuration's MYSQL output."""
    import json

    from ulogpy.tools.natlookup.cli import main as nat_lookup

    my.create_db("nat_src")
    assert _run("--mysql", _uri(my, "nat_src")).returncode == 0
    call = ("SELECT INSERT_OR_REPLACE_CT(2, '10.1.1.2', '10.2.2.2', 6, 41000, 80, {b}, 1, "
            "'10.2.2.2', '10.9.9.9', 6, 80, 40000, {b}, 1, NULL, NULL, 0, {s}, 0, {e}, 0, "
            "{ev})")
    my.query("nat_src", call.format(b=0, s=1700000000, e="NULL", ev=1))
    my.query("nat_src", call.format(b=60, s="NULL", e=1700000030, ev=4))
    args = ["--ip", "10.9.9.9", "--port", "40000", "--at", "1700000010", "--json"]
    assert nat_lookup([*args, "--source", _uri(my, "nat_src")]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [(f["inside_ip"], f["inside_port"], f["held"]) for f in found] == [
        ("10.1.1.2", 41000, True)]
    assert found[0]["end"] is not None
    conf = tmp_path / "ulogd.conf"
    conf.write_text("[global]\nstack=ct1:NFCT,ip2str1:IP2STR,my1:MYSQL\n[ct1]\n[my1]\n"
                    f'db="nat_src"\nhost="localhost"\nsocket="{my.socket}"\nuser="root"\n'
                    'pass=""\ntable="conntrack_events"\nprocedure="INSERT_OR_REPLACE_CT"\n')
    assert nat_lookup([*args, "-c", str(conf)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert [(f["inside_ip"], f["inside_port"]) for f in again] == [("10.1.1.2", 41000)]
    assert nat_lookup(["--ip", "10.9.9.9", "--port", "40001", "--at", "1700000010",
                       "--source", _uri(my, "nat_src")]) == 1
    capsys.readouterr()
