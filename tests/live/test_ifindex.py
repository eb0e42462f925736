"""IFINDEX keeps its interface names current while the daemon runs.

* The cache inside ulogpy's own event loop, in a namespace of its own: interfaces are
  added, renamed and deleted while the loop runs; the names must follow through the
  rtnetlink notifications alone (no reload of the table), and a deleted index must give
  "" (counted), not the previous name.
* The names IFINDEX gives equal those pyroute2 (a test dependency only: the daemon keeps
  its own small rtnetlink codec) reports for the same namespace.
* The whole daemon next to ulogd 2.0.8 in one namespace, on the same NFLOG packets
  (each rule logs to both daemons' groups): packets leave through a veth interface that
  is renamed, and through one created after both daemons started; the PRINTPKT lines
  (`OUT=<name>` included) must be identical.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from tests.netns import Netns
from tests.ulogd_ref import ULOGPY, UlogdProcess, wait_for_lines

pytestmark = pytest.mark.live
REPO = Path(__file__).resolve().parents[2]

LOOP_SCRIPT = textwrap.dedent("""\
    import json, socket, subprocess, time
    from ulogpy.daemon.loop import Loop
    from ulogpy.plugins.filter.ifindex import IFINDEX

    loop = Loop()
    plugin = IFINDEX("ifi1", None)
    plugin.configure()
    plugin.start(loop)
    seen = {}

    def ip(*args):
        subprocess.run(["ip", *args], check=True)

    def name_of(index):
        record = {"oob.ifindex_in": index}
        plugin.interp(record)
        return record["oob.in"]

    def add():
        ip("link", "add", "d0", "type", "veth", "peer", "name", "d0peer")
        seen["index"] = socket.if_nametoindex("d0")
        return lambda: plugin.cache.names.get(seen["index"]) == "d0"

    def rename():
        seen["after_add"] = name_of(seen["index"])
        ip("link", "set", "d0", "name", "wan-renamed")
        return lambda: plugin.cache.names.get(seen["index"]) == "wan-renamed"

    def delete():
        seen["after_rename"] = name_of(seen["index"])
        ip("link", "del", "wan-renamed")
        return lambda: seen["index"] not in plugin.cache.names

    def finish():
        seen["dumps_before_lookup"] = plugin.cache.dumps
        seen["after_delete"] = name_of(seen["index"])
        seen["unknown"] = plugin.counters.get("unknown_ifindex")
        seen["lo"] = name_of(1)
        return None

    steps = [add, rename, delete, finish]
    state = {"cond": None, "deadline": time.monotonic() + 5}

    def tick():
        if state["cond"] is not None and not state["cond"]():
            if time.monotonic() > state["deadline"]:
                seen["timeout"] = steps[0].__name__ if steps else "end"
                loop.stop()
            return
        if not steps:
            loop.stop()
            return
        state["cond"] = steps.pop(0)()
        state["deadline"] = time.monotonic() + 5

    loop.call_every(0.01, tick)
    loop.run()
    plugin.stop()
    print(json.dumps(seen))
""")


def test_cache_follows_links_inside_the_loop(netns: Netns) -> None:
    out = netns.python(["-c", LOOP_SCRIPT], cwd=str(REPO), timeout=30).stdout
    seen = json.loads(out.strip().splitlines()[-1])
    assert "timeout" not in seen, seen
    assert seen["after_add"] == "d0"
    assert seen["after_rename"] == "wan-renamed"
    # Every change came through the subscription: the only dump was the start-up one.
    assert seen["dumps_before_lookup"] == 1
    assert seen["after_delete"] == "" and seen["unknown"] == 1
    assert seen["lo"] == "lo"


# -- pyroute2 as the oracle ------------------------------------------------------------------
RESOLVE_SCRIPT = textwrap.dedent("""\
    import json, sys
    from ulogpy.daemon.loop import Loop
    from ulogpy.plugins.filter.ifindex import IFINDEX

    loop = Loop()
    plugin = IFINDEX("ifi1", None)
    plugin.configure()
    plugin.start(loop)
    names = {}
    for index in json.loads(sys.argv[1]):
        record = {"oob.ifindex_in": index, "oob.ifindex_out": index}
        plugin.interp(record)
        names[index] = [record["oob.in"], record["oob.out"]]
    print(json.dumps({"names": names, "unknown": plugin.counters.get("unknown_ifindex")}))
    plugin.stop()
    loop.close()
""")


def test_names_are_those_pyroute2_reports(netns: Netns) -> None:
    """IFINDEX's own rtnetlink codec against pyroute2, the standard Python netlink library,
    reading the same namespace from outside it (`NetNS`): every index has pyroute2's name.
    The links cover indexes past 16 bits, a 15-byte (longest) name, a UTF-8 name, a
    bridge, a link renamed and one deleted before the look-up (its index gives "")."""
    pyroute2 = pytest.importorskip("pyroute2")
    netns.ip("link", "add", "name", "big-a", "index", "4242", "type", "veth",
             "peer", "name", "big-b", "index", "70000")
    netns.ip("link", "add", "fifteen-chars-x", "type", "veth", "peer", "name", "w\u00e4n0")
    netns.ip("link", "add", "br0", "type", "bridge")
    netns.ip("link", "add", "old0", "type", "veth", "peer", "name", "gone0")
    netns.ip("link", "set", "old0", "name", "renamed0")
    with pyroute2.NetNS(netns.name) as ipr:
        gone = ipr.link_lookup(ifname="gone0")[0]
        netns.ip("link", "del", "renamed0")  # takes its peer gone0 with it
        netns.ip("link", "add", "new0", "type", "veth", "peer", "name", "new0peer")
        oracle = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
    assert {4242: "big-a", 70000: "big-b"}.items() <= oracle.items()
    assert {"lo", "fifteen-chars-x", "w\u00e4n0", "br0", "new0", "new0peer"} <= set(
        oracle.values())
    assert gone not in oracle and "renamed0" not in oracle.values()

    out = netns.python(["-c", RESOLVE_SCRIPT, json.dumps([*oracle, gone])],
                       cwd=str(REPO), timeout=30).stdout
    result = json.loads(out.strip().splitlines()[-1])
    names = {int(index): pair for index, pair in result["names"].items()}
    assert {index: names[index] for index in oracle} == {
        index: [name, name] for index, name in oracle.items()}
    assert names[gone] == ["", ""] and result["unknown"] == 2


# -- the daemon against ulogd ----------------------------------------------------------------
CONF = """\
[global]
loglevel=3
stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,print1:PRINTPKT,emu1:LOGEMU
[log1]
group={group}
[emu1]
file="{out}"
sync=1
"""
GROUPS = {"ulogd": 61, "ulogpy": 62}
LOGEMU_HEAD = re.compile(r"^\w{3} [ \d]\d \d\d:\d\d:\d\d \S+ ")
SEND = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.sendto(b'ifindex', (sys.argv[1], 9999))\n"
)


def _link(ns: Netns, name: str, net: int) -> None:
    """A veth pair (both ends here, up) with 10.<net>.0.1/24 on `name`."""
    ns.ip("link", "add", name, "type", "veth", "peer", "name", f"{name}peer")
    ns.ip("addr", "add", f"10.{net}.0.1/24", "dev", name)
    ns.ip("link", "set", f"{name}peer", "up")
    ns.ip("link", "set", name, "up")


def _packet_texts(path: Path, n: int) -> list[str]:
    return [LOGEMU_HEAD.sub("", line) for line in wait_for_lines(path, n, timeout=10)]


@pytest.mark.ulogd
def test_renamed_and_new_interfaces_as_ulogd(netns: Netns, tmp_path: Path) -> None:
    for plugin in ("plugins/input/nflog.py", "plugins/filter/base.py",
                   "plugins/output/logemu.py"):
        if not (REPO / plugin).exists():
            pytest.skip(f"{plugin} not built yet")
    _link(netns, "d0", 71)
    logs = " ".join(f"log prefix \"IFI\" group {g}" for g in GROUPS.values())
    netns.nft(
        "table inet ulogpy_ifi {\n"
        "  chain out {\n"
        "    type filter hook output priority 0; policy accept;\n"
        f"    udp dport 9999 {logs}\n"
        "  }\n"
        "}\n"
    )
    outputs = {who: tmp_path / who / "pkt.log" for who in GROUPS}
    daemons = []
    try:
        for who, group in GROUPS.items():
            conf = CONF.format(group=group, out=outputs[who])
            binary = ULOGPY if who == "ulogpy" else "/usr/sbin/ulogd"
            daemons.append(UlogdProcess(netns, conf, tmp_path / who, binary=binary).start())
        netns.python(["-c", SEND, "10.71.0.2"])
        for path in outputs.values():
            _packet_texts(path, 1)
        # Rename while both run (a renamed link must be down), then a link made afterwards.
        netns.ip("link", "set", "d0", "down")
        netns.ip("link", "set", "d0", "name", "uplink-b")
        netns.ip("link", "set", "uplink-b", "up")
        netns.python(["-c", SEND, "10.71.0.2"])
        _link(netns, "d2", 72)
        netns.python(["-c", SEND, "10.72.0.2"])
        texts = {who: _packet_texts(path, 3) for who, path in outputs.items()}
    finally:
        for d in daemons:
            d.stop()
    outs = [re.search(r" OUT=(\S*) ", t).group(1) for t in texts["ulogd"]]
    assert outs == ["d0", "uplink-b", "d2"]
    assert texts["ulogpy"] == texts["ulogd"]
