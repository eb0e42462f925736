"""PWSNIFF: the user names and passwords of FTP and POP3 logins, from logged packets.

For a TCP packet to port 21 (FTP) or 110 (POP3), IPv4 or IPv6, the filter looks
at its payload for the client's login lines and gives what follows them:
`USER name` sets `pwsniff.user`, `PASS secret` sets `pwsniff.pass`.  A line
starts at the payload's start or after a CR or LF, begins with "USER " or
"PASS " in any case, and its value is the rest of the line up to CR or LF,
spaces included; the end of the line must be in the same packet (a line cut by
the end of the payload gives nothing), the value may not be empty, and when a
packet carries several, the last one wins.  Bytes that are no UTF-8 are kept
visible, escaped (`\\xff`).  The only input is `raw.pkt`, as in ulogd: the
filter reads the IP and TCP headers itself (IPv6 extension headers included;
non-first fragments carry no TCP header and are left alone).

Every packet passes, with the two keys set where its payload carries them.
ulogd 2.0.8's PWSNIFF does not: it tests the validity of the wrong key and
stops every packet, so a stack with it writes nothing at all (the live test
shows it with the real ulogd).  With ulogpy such a stack logs every packet,
and the login lines where there are some; put MARK or a firewall rule in front
to log only those connections.

Sample configuration (log the FTP and POP3 logins a rule sends to group 2)::

    # nft add rule inet filter input tcp dport { 21, 110 } log group 2
    stack=log2:NFLOG,base1:BASE,ip2str1:IP2STR,pwsniff1:PWSNIFF,json1:JSON

    [log2]
    group=2

    [json1]
    file="/var/log/ulogd_pwsniff.json"
"""

from __future__ import annotations

import re

from ulogpy.core.keys import STRING, Key, KeyType, keys
from ulogpy.core.plugin import DataType, FilterPlugin, counters

#: TCP destination ports whose payload is looked at: FTP control and POP3.
PORTS = frozenset({21, 110})
#: A login line: at the payload's start or after CR/LF, the verb in any case, one space,
#: a non-empty value, and the line's end in the same payload.
LOGIN_LINE = re.compile(rb"(?:^|(?<=[\r\n]))(USER|PASS) ([^\r\n]+)[\r\n]", re.IGNORECASE)
#: Verb -> the key its value goes to.
VERB_KEYS = {b"USER": "pwsniff.user", b"PASS": "pwsniff.pass"}

TCP = 6
#: IPv6 extension headers walked to reach TCP: type -> how their length is given.
_EXT_8 = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options: (len+1)*8
_FRAGMENT, _AH = 44, 51


def tcp_payload(pkt: bytes) -> tuple[int, int, int] | None:
    """(destination port, payload start, payload end) of a TCP packet, else None.

    None too when the headers do not fit in the bytes at hand (a short copy range).
    """
    n = len(pkt)
    if n < 1:
        return None
    version = pkt[0] >> 4
    if version == 4:
        if n < 20:
            return None
        ihl = (pkt[0] & 0x0F) * 4
        if ihl < 20 or pkt[9] != TCP or int.from_bytes(pkt[6:8], "big") & 0x1FFF:
            return None
        pos, end = ihl, min(n, int.from_bytes(pkt[2:4], "big"))
    elif version == 6:
        if n < 40:
            return None
        nexthdr, pos, end = pkt[6], 40, min(n, 40 + int.from_bytes(pkt[4:6], "big"))
        while nexthdr != TCP:
            if pos + 8 > end:
                return None
            if nexthdr in _EXT_8:
                size = (pkt[pos + 1] + 1) * 8
            elif nexthdr == _FRAGMENT:
                if int.from_bytes(pkt[pos + 2:pos + 4], "big") & 0xFFF8:
                    return None  # a later fragment: no TCP header in it
                size = 8
            elif nexthdr == _AH:
                size = (pkt[pos + 1] + 2) * 4
            else:
                return None
            nexthdr, pos = pkt[pos], pos + size
    else:
        return None
    if pos + 20 > end:
        return None
    offset = (pkt[pos + 12] >> 4) * 4
    if offset < 20 or pos + offset > end:
        return None
    return int.from_bytes(pkt[pos + 2:pos + 4], "big"), pos + offset, end


def logins(payload: bytes) -> dict[str, str]:
    """The login keys a payload carries (the last line of each verb wins)."""
    found: dict[str, str] = {}
    for match in LOGIN_LINE.finditer(payload):
        found[VERB_KEYS[match.group(1).upper()]] = \
            match.group(2).decode("utf-8", "backslashreplace")
    return found


class PWSNIFF(FilterPlugin):
    name = "PWSNIFF"
    description = "User names and passwords of FTP and POP3 logins in TCP payloads"
    input_type = DataType.PACKET
    output_type = DataType.PACKET
    counter_table = counters(
        ("sniffed", False, "packets that carried a USER or PASS line"),
    )
    input_keys = (Key("raw.pkt", KeyType.NONE),)
    output_keys = keys(("pwsniff.user", STRING), ("pwsniff.pass", STRING))

    def configure(self) -> None:
        self.sniffed = self.counters.tally("sniffed")

    def interp(self, record: dict) -> bool | None:
        pkt = record.get("raw.pkt")
        if not pkt:
            return None
        where = tcp_payload(pkt)
        if where is None or where[0] not in PORTS or where[1] >= where[2]:
            return None
        found = logins(pkt[where[1]:where[2]])
        if found:
            record.update(found)
            self.sniffed.n += 1
        return None
