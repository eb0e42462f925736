"""ulogd 2.0.8 and ulogpy side by side on a NAT topology, each into its own database.

What the live SQL tests (PGSQL, MYSQL, DBI) do the same way whatever the
server: the topology with accounting and timestamps, the two daemons (ulogpy
with a spool and short reconnect waits), the flows and packets both see, the
NFLOG ruleset that copies each packet to both daemons' groups, and waiting
until both databases hold the same number of rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.db.helpers import wait_for
from tests.netns import NatTopology, icmp_echo, tcp_echo, udp_burst, udp_echo
from tests.ulogd_ref import ULOGPY, UlogdProcess

__all__ = ["ULOGD", "flow_topology", "nflog_ruleset", "ours_extra", "packet_traffic",
           "udp_flows", "wait_alike", "side_by_side"]

ULOGD = "/usr/sbin/ulogd"
FLOW_SYSCTLS = {"net.netfilter.nf_conntrack_acct": 1, "net.netfilter.nf_conntrack_timestamp": 1}
OURS_EXTRA = 'spool_dir="{spool}"\nreconnect=1\nreconnect_max=2\n'


@contextmanager
def flow_topology() -> Iterator[NatTopology]:
    """lan/fw/wan with conntrack accounting and timestamps (the flow tables' counters)."""
    with NatTopology(fw_sysctls=FLOW_SYSCTLS) as topo:
        yield topo


def ours_extra(tmp_path: Path) -> str:
    """ulogpy's own options for a SQL section: a spool, and quick reconnects."""
    return OURS_EXTRA.format(spool=tmp_path / "spool")


def side_by_side(topo: NatTopology, tmp_path: Path, confs: dict[str, str],
                 extra: bool = True) -> dict[str, UlogdProcess]:
    """`UlogdProcess`es in the firewall namespace for {"ulogd"|"ulogpy": conf text}; with
    `extra`, ulogpy's text gets `ours_extra` at its end (its last section is the SQL one)."""
    procs = {}
    for daemon, text in confs.items():
        ours = daemon == "ulogpy"
        more = ours_extra(tmp_path) if ours and extra else ""
        procs[daemon] = UlogdProcess(topo.fw, text + more, tmp_path / daemon,
                                     binary=ULOGPY if ours else ULOGD)
    return procs


def udp_flows(topo: NatTopology, first_port: int, n: int) -> None:
    """`n` UDP flows lan -> wan (one datagram each, distinct destination ports)."""
    udp_burst(topo.lan, topo.wan_ip4, first_port, n)


def packet_traffic(topo: NatTopology) -> None:
    """TCP, UDP and ICMP through the firewall and TCP from it, IPv4 and IPv6."""
    for fam in (4, 6):
        tcp_echo(topo.lan, topo.wan, topo.wan_ip(fam))
        udp_echo(topo.lan, topo.wan, topo.wan_ip(fam))
        icmp_echo(topo.lan, topo.wan_ip(fam))
        tcp_echo(topo.fw, topo.wan, topo.wan_ip(fam))


def nflog_ruleset(table: str, groups: Iterable[int], related: bool = False) -> str:
    """An nft table that logs each forwarded new flow's first packet (and, with `related`,
    related ones) and the firewall's own packets to every group in `groups`."""
    groups = tuple(groups)

    def log(prefix: str) -> str:
        return " ".join(f'log prefix "{prefix}" group {g}' for g in groups)

    rel = f"    ct state related {log('FWD rel ')}\n" if related else ""
    return (f"table inet {table} {{\n"
            "  chain fwd_log {\n"
            "    type filter hook forward priority 0; policy accept;\n"
            f"    ct state new {log('FWD new: ')}\n"
            f"{rel}"
            "  }\n"
            "  chain out_log {\n"
            "    type filter hook output priority 0; policy accept;\n"
            f"    meta l4proto {{ tcp, udp, icmp }} {log('OUT ')}\n"
            f"    icmpv6 type {{ echo-request, echo-reply }} {log('OUT6 ')}\n"
            "  }\n"
            "}\n")


def wait_alike(count: Callable[[str], int], dbs: Iterable[str], timeout: float = 20) -> None:
    """Wait past the kernel's 1 s NFLOG batch timer, then until every database's `count`
    is the same, above 0, three times in a row."""
    dbs = tuple(dbs)
    time.sleep(1.5)
    history: list[tuple[int, ...]] = []

    def settled() -> bool:
        history.append(tuple(count(db) for db in dbs))
        last = history[-3:]
        return len(last) == 3 and len(set(last)) == 1 and len(set(last[0])) == 1 \
            and last[0][0] > 0

    wait_for(settled, timeout=timeout, interval=0.5, what="both databases alike")
