"""NACCT: one tab-separated accounting line per flow, as nacctd wrote them (spec 4.21).

The line is ``end  proto  src  sport  dst  dport  packets  bytes``: the flow's end
time in seconds, the IP protocol number, the original direction's addresses (IP2STR
text) and ports -- for ICMP the type and code instead -- and the **reply**
direction's packet and byte counters, as ulogd 2.0.8 writes them.

Unlike ulogd: a key the event lacks (no end time on a NEW event, no ports on an
ICMPv6 flow) prints as 0, where ulogd prints whatever the previous flow left in
it.  Sample configuration (flows in hash mode, one line when each ends)::

    stack=ct1:NFCT,ip2str1:IP2STR,nacct1:NACCT

    [ct1]
    [nacct1]
    file="/var/log/ulog/nacct.log"
    sync=1
"""

from __future__ import annotations

from ulogpy.core.keys import STRING, U8, U16, U32, U64, keys
from ulogpy.core.plugin import DataType, Option
from ulogpy.delivery.options import queue_options
from ulogpy.transports.file import FileOutput

IPPROTO_ICMP = 1


class NACCT(FileOutput):
    name = "NACCT"
    description = "nacctd-style tab-separated flow accounting lines in a file"
    input_type = DataType.FLOW
    section_required = True
    reopen_notice = "NACCT: reopening logfile"
    open_error = "NACCT:"  # ulogd: "<file>: <reason>"
    options = (
        Option("file", str, "/var/log/ulogd_nacct.log", help="path of the accounting file"),
        Option("sync", int, 0, help="1: every batch reaches the file at once"),
        *queue_options(),
    )
    input_keys = keys(
        ("orig.ip.saddr.str", STRING), ("orig.ip.daddr.str", STRING),
        ("orig.ip.protocol", U8), ("orig.l4.sport", U16), ("orig.l4.dport", U16),
        ("reply.raw.pktlen", U64), ("reply.raw.pktcount", U64),
        ("icmp.code", U8), ("icmp.type", U8),
        ("flow.start.sec", U32), ("flow.end.sec", U32),
    )

    def render(self, record: dict) -> str:
        get = record.get
        proto = get("orig.ip.protocol", 0)
        if proto == IPPROTO_ICMP:
            first, second = get("icmp.type", 0), get("icmp.code", 0)
        else:
            first, second = get("orig.l4.sport", 0), get("orig.l4.dport", 0)
        return (f"{get('flow.end.sec', 0)}\t{proto}\t{get('orig.ip.saddr.str', '')}\t{first}\t"
                f"{get('orig.ip.daddr.str', '')}\t{second}\t{get('reply.raw.pktcount', 0)}\t"
                f"{get('reply.raw.pktlen', 0)}\n")
