"""PWSNIFF on real FTP and POP3 login bytes, logged by NFLOG, next to ulogd 2.0.8.

In a namespace of its own, a client sends FTP-like (port 21, IPv4) and POP3-like (port
110, IPv6) command lines, one TCP segment each, to servers on loopback, and a line to
port 2121, which PWSNIFF must leave alone.  One nftables rule sends every client packet
to two NFLOG groups: one read by ulogd, one by ulogpy.  Each daemon runs
NFLOG -> BASE -> PWSNIFF -> JSON and, on the same NFLOG input, the control stack
NFLOG -> BASE -> JSON.

* ulogd's PWSNIFF stack writes nothing although its control stack logs every packet:
  its PWSNIFF stops every packet (it tests the validity of the wrong key).
* ulogpy's PWSNIFF stack logs every packet its control stack logs, with the same
  values, plus `pwsniff.user` / `pwsniff.pass` exactly where the segment carried a
  complete USER or PASS line, with the value the client sent.
"""

from __future__ import annotations

import json
import sys

import pytest

from tests.netns import Netns, wait_until
from tests.ulogd_ref import ULOGPY, UlogdProcess, read_lines

pytestmark = [pytest.mark.live, pytest.mark.ulogd]

G_ULOGD, G_ULOGPY = 31, 32
#: (address, port, segment, the keys PWSNIFF must set for it), in sending order.
SEGMENTS = (
    ("127.0.0.1", 21, b"USER alice\r\n", {"pwsniff.user": "alice"}),
    ("127.0.0.1", 21, b"PASS open sesame\r\n", {"pwsniff.pass": "open sesame"}),
    ("127.0.0.1", 21, b"user Bob\r\npass x1 \r\n", {"pwsniff.user": "Bob", "pwsniff.pass": "x1 "}),
    ("127.0.0.1", 21, b"PASS cut", {}),
    ("127.0.0.1", 21, b"-off\r\n", {}),
    ("127.0.0.1", 21, b"NOOP\r\nUSER first\r\nUSER last\r\n", {"pwsniff.user": "last"}),
    ("127.0.0.1", 21, b"USER \r\n", {}),
    ("127.0.0.1", 21, b"SYST\r\n", {}),
    ("::1", 110, b"USER carol\r\n", {"pwsniff.user": "carol"}),
    ("::1", 110, b"PASS pop pass\r\n", {"pwsniff.pass": "pop pass"}),
    ("::1", 110, b"QUIT\r\n", {}),
    ("127.0.0.1", 2121, b"USER elsewhere\r\n", {}),
)

CLIENT = """\
import json, socket, sys, threading, time
plan = json.loads(sys.argv[1])
listeners = {}
for addr, port in {(a, p) for a, p, _ in plan}:
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    srv = socket.socket(fam, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, port))
    srv.listen()
    listeners[(addr, port)] = srv
def drain(srv):
    conn, _ = srv.accept()
    while conn.recv(65536):
        pass
    conn.close()
threads = [threading.Thread(target=drain, args=(s,)) for s in listeners.values()]
for t in threads:
    t.start()
clients = {}
for addr, port, text in plan:
    key = (addr, port)
    if key not in clients:
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        clients[key] = socket.create_connection((addr, port))
        clients[key].setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    clients[key].sendall(text.encode("latin-1"))
    time.sleep(0.05)  # one segment each: acknowledged before the next is sent
for c in clients.values():
    c.close()
for t in threads:
    t.join(5)
"""

NFT = f"""\
table inet pw {{
    chain out {{
        type filter hook output priority 0; policy accept;
        tcp dport {{ 21, 110, 2121 }} log group {G_ULOGD} log group {G_ULOGPY}
    }}
}}
"""

CONF = """\
[global]
loglevel=3
stack=log1:NFLOG,base1:BASE,pw1:PWSNIFF,json1:JSON
stack=log1:NFLOG,base1:BASE,json2:JSON
[log1]
group={group}
[json1]
file="{d}/pwsniff.json"
sync=1
[json2]
file="{d}/control.json"
sync=1
"""


def payload_lengths(sent: list[dict]) -> list[int]:
    """The TCP payload length of each logged packet, from the sequence number of the
    connection's next packet (BASE's `tcp.offset` is ulogd's, 0, so the header length is
    not in the record); SYN and FIN packets count 0."""
    lengths = [0] * len(sent)
    last: dict[tuple, int] = {}
    for index, record in enumerate(sent):
        conn = (record["oob.family"], record["src_port"], record["dest_port"])
        if conn in last:
            before = sent[last[conn]]
            if not (before["tcp.syn"] or before["tcp.fin"]):
                lengths[last[conn]] = (record["tcp.seq"] - before["tcp.seq"]) % 2**32
        last[conn] = index
    return lengths


def records(path) -> list[dict]:
    return [json.loads(text) for text in read_lines(path)]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("pwsniff")
    theirs, ours = base / "ulogd", base / "ulogpy"
    ours.mkdir()
    plan = json.dumps([(a, p, s.decode("latin-1")) for a, p, s, _ in SEGMENTS])
    with Netns("pwsniff") as ns:
        ns.nft(NFT)
        ulogd = UlogdProcess(ns, CONF.format(group=G_ULOGD, d=theirs), theirs)
        ulogpy = UlogdProcess(ns, CONF.format(group=G_ULOGPY, d=ours), ours / "run",
                              binary=ULOGPY)
        with ulogd, ulogpy:
            ns.run([sys.executable, "-c", CLIENT, plan])
            want = len(SEGMENTS) + 6  # at least: a SYN and a FIN per connection
            for d in (theirs, ours):
                wait_until(lambda d=d: len(read_lines(d / "control.json")) >= want,
                           timeout=10, what=f"{want} control records in {d}")
            # the last client packets (FIN, ACK) are logged too: both daemons settle
            wait_until(lambda: len(read_lines(ours / "pwsniff.json"))
                       == len(read_lines(ours / "control.json"))
                       == len(read_lines(theirs / "control.json")), timeout=10,
                       what="every packet in both control files and ulogpy's PWSNIFF file")
            assert ulogpy.stop() == 0
            ulogd.stop()
    yield ours, theirs


def test_ulogd_pwsniff_stops_every_packet(run):
    """The ulogd 2.0.8 behaviour ulogpy does not copy: nothing passes its PWSNIFF."""
    _ours, theirs = run
    assert len(records(theirs / "control.json")) >= len(SEGMENTS)
    assert records(theirs / "pwsniff.json") == []


def test_every_packet_passes_with_the_control_stacks_values(run):
    ours, _ = run
    sniffed, control = records(ours / "pwsniff.json"), records(ours / "control.json")
    assert len(sniffed) == len(control)
    for mine, plain in zip(sniffed, control, strict=True):
        rest = {k: v for k, v in mine.items() if not k.startswith("pwsniff.")}
        assert rest == plain
        assert list(rest) == list(plain)  # same keys in the same order


def test_keys_are_set_exactly_where_the_client_sent_a_login_line(run):
    ours, _ = run
    sniffed = records(ours / "pwsniff.json")
    lengths = payload_lengths(sniffed)
    with_payload = [r for r, n in zip(sniffed, lengths, strict=True) if n]
    assert [n for n in lengths if n] == [len(s[2]) for s in SEGMENTS]
    for record, (_addr, port, segment, keys) in zip(with_payload, SEGMENTS, strict=True):
        assert record["dest_port"] == port
        found = {k: v for k, v in record.items() if k.startswith("pwsniff.")}
        assert found == keys, segment
    for record, n in zip(sniffed, lengths, strict=True):
        if not n:
            assert not any(k.startswith("pwsniff.") for k in record)
    families = {r["oob.family"] for r in with_payload if "pwsniff.user" in r}
    assert families == {2, 10}
