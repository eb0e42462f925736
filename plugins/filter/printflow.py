"""PRINTFLOW: one conntrack record as ulogd's text line (spec 5.3).

Kept bug-compatible, since log parsers read these lines: ICMP prints
`TYPE=<code> CODE=<type>` (labels swapped), and SCTP/DCCP show no ports.
"""

from __future__ import annotations

from ulogpy.core.keys import IPADDR, STRING, U8, U16, U32, U64, keys
from ulogpy.core.plugin import DataType, FilterPlugin

_EVENTS = {1: "[NEW] ", 2: "[UPDATE] ", 4: "[DESTROY] "}
_PORTED = {6: "PROTO=TCP ", 17: "PROTO=UDP "}
_PLAIN = {50: "PROTO=ESP ", 51: "PROTO=AH "}


#: Each direction's key names, made once (this runs for every flow).
_NAMES = {d: tuple(f"{d}.{name}" for name in ("ip.saddr.str", "ip.daddr.str", "ip.protocol",
                                                "l4.sport", "l4.dport", "raw.pktcount",
                                                "raw.pktlen"))
          for d in ("orig", "reply")}


def _direction(record: dict, d: str) -> str:
    get = record.get
    k_saddr, k_daddr, k_proto, k_sport, k_dport, k_pkts, k_bytes = _NAMES[d]
    out = []
    saddr = get(k_saddr)
    if saddr is not None:
        out.append(f"SRC={saddr} ")
    daddr = get(k_daddr)
    if daddr is not None:
        out.append(f"DST={daddr} ")
    proto = get(k_proto)
    if proto is not None:
        if proto in _PORTED:
            out.append(_PORTED[proto])
            sport = get(k_sport)
            if sport is not None:
                out.append(f"SPT={sport} ")
            dport = get(k_dport)
            if dport is not None:
                out.append(f"DPT={dport} ")
        elif proto == 1:
            out.append("PROTO=ICMP ")
            code = get("icmp.code")
            if code is not None:
                out.append(f"TYPE={code} ")
            itype = get("icmp.type")
            if itype is not None:
                out.append(f"CODE={itype} ")
        elif proto in _PLAIN:
            out.append(_PLAIN[proto])
        else:
            out.append(f"PROTO={proto} ")
    pkts = get(k_pkts)
    if pkts is not None:
        out.append(f"PKTS={pkts} ")
    nbytes = get(k_bytes)
    if nbytes is not None:
        out.append(f"BYTES={nbytes} ")
    return "".join(out)


class PRINTFLOW(FilterPlugin):
    name = "PRINTFLOW"
    description = "Format a conntrack flow as ulogd's text line"
    input_type = DataType.FLOW
    output_type = DataType.FLOW
    # ulogd declares the .str inputs as IP addresses; `-i` shows them so.
    input_keys = keys(
        *(
            (f"{d}.{name}", typ)
            for d in ("orig", "reply")
            for name, typ in (
                ("ip.saddr.str", IPADDR), ("ip.daddr.str", IPADDR), ("ip.protocol", U8),
                ("l4.sport", U16), ("l4.dport", U16), ("raw.pktlen", U64),
                ("raw.pktcount", U64),
            )
        ),
        ("icmp.code", U8), ("icmp.type", U8), ("ct.event", U32),
    )
    output_keys = keys(("print", STRING))

    def interp(self, record: dict) -> bool | None:
        event = _EVENTS.get(record.get("ct.event"), "")
        record["print"] = (
            f"{event}ORIG: {_direction(record, 'orig')}, REPLY: {_direction(record, 'reply')}\n"
        )
        return None
