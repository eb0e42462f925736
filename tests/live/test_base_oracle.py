"""BASE against the real ulogd 2.0.8, packet by packet.

ulogd's UNIXSOCK input takes framed packets on a local stream socket, so the
real BASE can be fed crafted packets with no kernel involved (no namespace,
no firewall).  ulogd runs two stacks on the corpus of
`tests/fixtures/packets/corpus.py`:

* ``UNIXSOCK -> BASE -> OPRINT``: every valid key, addresses included;
* ``UNIXSOCK -> BASE -> IP2STR -> JSON``: the field names (CIM renames) and
  values downstream parsers see.

For each packet ulogpy's BASE must give the same keys with the same values,
rendered the way OPRINT and JSON render them.  The run also checks that the
recording the unit tests use (`ulogd_base.json`) is what ulogd writes today.

Re-record that file from the repository root with
``.venv/bin/python -m tests.live.test_base_oracle``.

UNIXSOCK cannot carry bridge-family packets, so `test_bridge_family` logs
real frames crossing a bridge in a namespace of its own (nft ``bridge``
table, ``log group``, ulogd's NFLOG) while a packet socket on the bridge port
captures the same frames, and compares BASE on those bytes with ulogd's.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ulogpy.plugins.filter.base import BASE

from tests.fixtures.packets.corpus import CASES, RECORDING, unixsock_family
from tests.fixtures.packets.render import as_json, as_oprint, ulogpy_base
from tests.netns import Netns, wait_until
from tests.ulogd_ref import ULOGD_BIN, ULOGD_PLUGIN_DIR, UlogdProcess, ulogd_skip_reason

pytestmark = pytest.mark.ulogd

MARKER = 0x41C90FD4
OPT_PREFIX = 1

CONF = """\
[global]
logfile="{d}/ulogd.log"
loglevel=3
plugin="{p}/ulogd_inppkt_UNIXSOCK.so"
plugin="{p}/ulogd_raw2packet_BASE.so"
plugin="{p}/ulogd_filter_IP2STR.so"
plugin="{p}/ulogd_output_JSON.so"
plugin="{p}/ulogd_output_OPRINT.so"
stack=uo:UNIXSOCK,base1:BASE,op1:OPRINT
stack=uj:UNIXSOCK,base1:BASE,ip2str1:IP2STR,json1:JSON

[uo]
socket_path="{d}/uo.sock"
[uj]
socket_path="{d}/uj.sock"
[op1]
file="{d}/oprint.log"
sync=1
[json1]
file="{d}/json.log"
sync=1
"""

#: JSON fields that come from UNIXSOCK or JSON itself, not from BASE/IP2STR.
_NOT_BASE_JSON = {"timestamp", "dvc", "raw.pktlen", "raw.pktcount", "oob.prefix",
                  "oob.family"}


# ---------------------------------------------------------------------------- ulogd side


def frame(pkt: bytes, prefix: str) -> bytes:
    """One UNIXSOCK frame: the packet, then the prefix option (8-byte aligned)."""
    value = prefix.encode() + b"\0"
    opt = struct.pack("!II", OPT_PREFIX, len(value)) + value + bytes(-len(value) % 8)
    body = struct.pack("!IH", 0, len(pkt)) + pkt + bytes(-len(pkt) % 8) + opt
    return struct.pack("!IH", MARKER, 2 + len(body)) + body


def _wait(pred, timeout: float, what: str, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.05)
    log_text = log.read_text(errors="replace") if log.exists() else ""
    raise TimeoutError(f"ulogd: no {what} after {timeout}s; its log:\n{log_text[-3000:]}")


def parse_oprint(text: str) -> list[dict[str, str]]:
    """OPRINT's dump: one dict per `===>PACKET BOUNDARY` block."""
    out: list[dict[str, str]] = []
    for line in text.splitlines():
        if line == "===>PACKET BOUNDARY":
            out.append({})
        elif out and "=" in line:
            name, _, value = line.partition("=")
            out[-1][name] = value
    return out


def run_ulogd(cases: list[tuple[str, bytes]], tmp: Path) -> dict[str, dict]:
    """Feed `cases` to the real ulogd; per packet name, its OPRINT and JSON output."""
    tmp.mkdir(parents=True, exist_ok=True)
    conf = tmp / "ulogd.conf"
    conf.write_text(CONF.format(d=tmp, p=ULOGD_PLUGIN_DIR))
    log = tmp / "ulogd.log"
    with open(tmp / "ulogd.out", "wb") as out:
        proc = subprocess.Popen([str(ULOGD_BIN), "-c", str(conf)], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait(lambda: "entering main loop" in (log.read_text() if log.exists() else ""),
              10, "start-up", log)
        for sock_name in ("uo.sock", "uj.sock"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(str(tmp / sock_name))
                for name, pkt in cases:
                    s.sendall(frame(pkt, name))
        n = len(cases)
        oprint = _wait(lambda: (lambda b: b if len(b) >= n else None)(
            parse_oprint((tmp / "oprint.log").read_text() if (tmp / "oprint.log").exists()
                         else "")), 20, f"{n} OPRINT records", log)
        lines = _wait(lambda: (lambda ls: ls if len(ls) >= n else None)(
            (tmp / "json.log").read_text().splitlines() if (tmp / "json.log").exists()
            else []), 20, f"{n} JSON lines", log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    result: dict[str, dict] = {name: {} for name, _ in cases}
    for block in oprint:
        result[block["oob.prefix"]]["oprint"] = block
    for line in lines:
        rec = json.loads(line)
        result[rec["oob.prefix"]]["json"] = rec
    return result


def recording_from(cases: list[tuple[str, bytes]], raw: dict[str, dict]) -> dict[str, dict]:
    """What is kept of ulogd's output: BASE's keys in OPRINT, BASE+IP2STR's JSON fields."""
    names = {k.name for k in BASE.output_keys}
    out = {}
    for name, pkt in cases:
        got = raw[name]
        out[name] = {
            "hex": pkt.hex(),
            "family": int(got["oprint"]["oob.family"]),
            "oprint": {k: v for k, v in got["oprint"].items() if k in names},
            "json": {k: v for k, v in got["json"].items() if k not in _NOT_BASE_JSON},
        }
    return out


# ---------------------------------------------------------------------------- the test


@pytest.fixture(scope="module")
def ulogd_output(tmp_path_factory) -> dict[str, dict]:
    reason = ulogd_skip_reason()
    if reason:
        pytest.skip(reason)
    raw = run_ulogd(CASES, tmp_path_factory.mktemp("base_oracle"))
    return recording_from(CASES, raw)


@pytest.mark.parametrize(("name", "pkt"), CASES, ids=[c[0] for c in CASES])
def test_base_matches_ulogd(ulogd_output: dict, name: str, pkt: bytes) -> None:
    got = ulogd_output[name]
    assert got["family"] == unixsock_family(pkt)
    ours = ulogpy_base(pkt, got["family"])
    assert as_oprint(ours) == got["oprint"]
    assert as_json(ours) == got["json"]


def test_recording_is_current(ulogd_output: dict) -> None:
    """The unit tests' expectations are what ulogd writes today."""
    recorded = json.loads(RECORDING.read_text())
    assert recorded == ulogd_output


if __name__ == "__main__":
    import tempfile

    if ulogd_skip_reason():
        sys.exit(ulogd_skip_reason())
    with tempfile.TemporaryDirectory() as d:
        data = recording_from(CASES, run_ulogd(CASES, Path(d)))
    RECORDING.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(data)} packets to {RECORDING}")


# ---------------------------------------------------------------------------- bridge family

BRIDGE_CONF = """\
[global]
loglevel=3
plugin="{p}/ulogd_inppkt_NFLOG.so"
plugin="{p}/ulogd_raw2packet_BASE.so"
plugin="{p}/ulogd_output_OPRINT.so"
stack=l1:NFLOG,base1:BASE,op1:OPRINT
[l1]
group=7
[op1]
file="{d}/oprint.log"
sync=1
"""

BRIDGE_RULES = """\
table bridge ulogpy_base {
  chain pre {
    type filter hook prerouting priority 0; policy accept;
    ether type { arp, ip } log group 7
  }
}
"""

#: Frames received on the bridge port (not the ones it sends), hex per line.
SNIFFER = """\
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind(("va", 0))
print("ready", flush=True)
with open(sys.argv[1], "w") as out:
    while True:
        frame, addr = s.recvfrom(65535)
        if addr[2] != socket.PACKET_OUTGOING and frame[12:14] in (b"\\x08\\x06", b"\\x08\\x00"):
            out.write(frame.hex() + "\\n")
            out.flush()
"""


@pytest.mark.live
def test_bridge_family(live_ok, tmp_path: Path) -> None:
    """ARP and IPv4 seen by an nft bridge table: family 7, dispatch on the ethertype."""
    with Netns("brbase") as br, Netns("brhost") as host:
        br.ip("link", "add", "br0", "type", "bridge")
        br.ip("link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", host.name)
        br.ip("link", "set", "va", "master", "br0")
        br.ip("addr", "add", "10.77.0.2/24", "dev", "br0")
        host.ip("addr", "add", "10.77.0.1/24", "dev", "vb")
        for ns, dev in ((br, "br0"), (br, "va"), (host, "vb")):
            ns.ip("link", "set", dev, "up")
        br.nft(BRIDGE_RULES)
        frames_path = tmp_path / "frames.txt"
        sniffer = br.popen([sys.executable, "-c", SNIFFER, str(frames_path)],
                           stdout=subprocess.PIPE, text=True)
        assert sniffer.stdout is not None and sniffer.stdout.readline().strip() == "ready"
        oprint = tmp_path / "oprint.log"
        with UlogdProcess(br, BRIDGE_CONF.format(d=tmp_path, p=ULOGD_PLUGIN_DIR), tmp_path):
            host.run(["ping", "-c", "2", "-i", "0.2", "-W", "2", "10.77.0.2"])

            def settled():
                frames = frames_path.read_text().split() if frames_path.exists() else []
                blocks = parse_oprint(oprint.read_text()) if oprint.exists() else []
                return (frames, blocks) if len(frames) >= 3 and len(blocks) == len(frames) \
                    else None

            frames, blocks = wait_until(settled, 10, what="ulogd and the sniffer to agree")
    checked = {"arp": 0, "ip": 0}
    names = {k.name for k in BASE.output_keys}
    for hexframe, block in zip(frames, blocks, strict=True):
        frame = bytes.fromhex(hexframe)
        ethertype = int.from_bytes(frame[12:14], "big")
        assert block["oob.family"] == "7" and block["oob.protocol"] == str(ethertype)
        pkt = frame[14:]
        assert block["raw.pktlen"] == str(len(pkt))
        ours = {"raw.pkt": pkt, "raw.pktlen": len(pkt), "oob.family": 7,
                "oob.protocol": ethertype}
        assert BASE("b", None).interp(ours) is None
        want = {k: v for k, v in block.items() if k in names}
        got = as_oprint(ours)
        if ethertype == 0x0806:
            checked["arp"] += 1
            # ulogd stores pointers here (spec 8.3 B5); ulogpy the addresses themselves.
            del want["arp.saddr"], want["arp.daddr"], got["arp.saddr"], got["arp.daddr"]
            assert ours["arp.saddr"] == pkt[14:18] and ours["arp.daddr"] == pkt[24:28]
            assert ours["arp.shwaddr"] == pkt[8:14] and ours["arp.dhwaddr"] == pkt[18:24]
        else:
            checked["ip"] += 1
        assert got == want
    assert checked["arp"] >= 1 and checked["ip"] >= 2, checked
