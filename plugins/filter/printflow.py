"""PRINTFLOW: one conntrack record as ulogd's text line (spec 5.3).

Kept bug-compatible, since log parsers read these lines: ICMP prints
`TYPE=<code> CODE=<type>` (labels swapped), and SCTP/DCCP show no ports.
"""

from __future__ import annotations

from ulogpy.core.keys import IPADDR, STRING, U8, U16, U32, U64, keys
from ulogpy.core.plugin import DataType, FilterPlugin
from ulogpy.render.textline import Step, field, switch, text, text_line

_EVENTS = {1: "[NEW] ", 2: "[UPDATE] ", 4: "[DESTROY] "}


def _direction(d: str) -> list[Step]:
    """One direction's part: addresses, the protocol and what it has, counters."""
    proto = f"{d}.ip.protocol"
    ports = (field(f"{d}.l4.sport", "SPT="), field(f"{d}.l4.dport", "DPT="))
    return [
        field(f"{d}.ip.saddr.str", "SRC="), field(f"{d}.ip.daddr.str", "DST="),
        switch(proto, {
            6: (text("PROTO=TCP "), *ports), 17: (text("PROTO=UDP "), *ports),
            # ulogd's ICMP labels, swapped
            1: (text("PROTO=ICMP "), field("icmp.code", "TYPE="), field("icmp.type", "CODE=")),
            50: (text("PROTO=ESP "),), 51: (text("PROTO=AH "),),
            None: (),
        }, other=(field(proto, "PROTO="),)),
        field(f"{d}.raw.pktcount", "PKTS="), field(f"{d}.raw.pktlen", "BYTES="),
    ]


#: The whole line, one table for the compiled and the pure way (`ulogpy.render.textline`).
LAYOUT = (
    switch("ct.event", {event: (text(label),) for event, label in _EVENTS.items()}),
    text("ORIG: "), *_direction("orig"), text(", REPLY: "), *_direction("reply"), text("\n"),
)
_line = text_line(LAYOUT, "PRINTFLOW line")


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
        record["print"] = _line(record)
        return None
