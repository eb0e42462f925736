"""ULOG: ulogd's input for the legacy ipt_ULOG target, described but refused.

Why a plugin that never runs: the kernel's ULOG target (`iptables -j ULOG`) was
removed in Linux 3.17, so no current kernel sends it anything; ulogd 2.0.8 still
loads its ULOG plugin and then fails at start ("Can't create ULOG handle", exit
1).  ulogpy knows the plugin so that `ulogpy -i ULOG` describes it as ulogd does,
and so that a configuration using it is refused when its stacks are built (the
daemon and `--check` alike, exit 1), naming the stack's line and saying what
replaces it: NFLOG, fed by `iptables -j NFLOG --nflog-group N` or nftables' `log
group N`, in the same stack with IFINDEX after it (ULOG gave the interface
names itself, NFLOG gives their indexes).  There is no sample configuration:
use NFLOG.
"""

from __future__ import annotations

from typing import Any

from ulogpy.core.keys import RAW, STRING, U8, U16, U32, keys
from ulogpy.core.plugin import DataType, InputPlugin, Option, PluginError

#: ULOG options with no NFLOG option of the same name -> what NFLOG calls them.
RENAMED = {"nlgroup": "group", "rmem": "netlink_socket_buffer_size"}


class ULOG(InputPlugin):
    name = "ULOG"
    description = "Legacy ipt_ULOG input (removed from Linux 3.17): refused, use NFLOG"
    output_type = DataType.RAW
    section_required = True
    options = (
        Option("bufsize", int, 150000, help="receive buffer size"),
        Option("nlgroup", int, 32, help="netlink multicast group of the ULOG rules"),
        Option("rmem", int, 131071, help="socket receive buffer in bytes"),
        Option("numeric_label", int, 0, help="label set in raw.label"),
    )
    output_keys = keys(
        ("raw.mac", RAW), ("raw.pkt", RAW), ("raw.pktlen", U32), ("raw.pktcount", U32),
        ("oob.prefix", STRING), ("oob.time.sec", U32), ("oob.time.usec", U32),
        ("oob.mark", U32), ("oob.in", STRING), ("oob.out", STRING), ("oob.hook", U8),
        ("raw.mac_len", U16), ("oob.family", U8), ("oob.protocol", U16), ("raw.label", U8),
    )

    @classmethod
    def refusal(cls, instance_id: str, stack: list[tuple[str, str]], whole: Any) -> str:
        """Why a stack using ULOG is refused, with the NFLOG stack that replaces it
        (`whole`: the whole configuration, for the section of the instance)."""
        group = 32
        renames = []
        section = whole.section(instance_id)
        if section is not None:
            for entry in section.entries:
                if entry.key == "nlgroup":
                    group = entry.value
                if entry.key in RENAMED:
                    renames.append(f"{entry.key}= becomes {RENAMED[entry.key]}=")
        return (
            f"{instance_id}:ULOG: the kernel's ULOG target was removed in Linux 3.17 and "
            "ulogpy has no ULOG input; NFLOG replaces it: log with `iptables -j NFLOG "
            f"--nflog-group {group}` or nftables `log group {group}`, and use the stack "
            f"'{equivalent_stack(instance_id, stack)}' with [{instance_id}] group={group}"
            + (f" ({', '.join(renames)})" if renames else "")
        )

    def configure(self) -> None:
        raise PluginError("the ULOG input is not supported (removed from Linux 3.17); "
                          "use NFLOG")


def equivalent_stack(instance_id: str, stack: list[tuple[str, str]]) -> str:
    """The stack with NFLOG for ULOG, and IFINDEX (after BASE, when BASE follows the
    input) unless it has one already."""
    tokens = [f"{inst}:{'NFLOG' if inst == instance_id and plugin == 'ULOG' else plugin}"
              for inst, plugin in stack]
    if all(plugin != "IFINDEX" for _, plugin in stack):
        ids = {inst for inst, _ in stack}
        ifi = next(f"ifi{n}" for n in range(1, len(ids) + 2) if f"ifi{n}" not in ids)
        at = 2 if len(stack) > 1 and stack[1][1] == "BASE" else 1
        tokens.insert(at, f"{ifi}:IFINDEX")
    return ",".join(tokens)
