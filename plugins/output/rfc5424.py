"""Syslog message text for SYSLOG: glibc's local format and RFC 5424 for remote peers.

Local (what glibc's syslog(3) sends to /dev/log, so that a syslog daemon
sees ulogd's bytes): ``<PRI>Mmm dd HH:MM:SS TAG[PID]: MSG``, the time being
the local time of sending, the message unchanged (PRINTPKT's newline too).

Remote (RFC 5424): ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID - [SD] MSG``
with the packet's time in UTC to the microsecond, the message without its
trailing newline, and the record's main fields as SD-PARAMs of one
SD-ELEMENT (the output's table says which key becomes which parameter).  Over TCP
each message is framed by its octet count (RFC 6587, 3.4.1), so a message
may hold any byte.
"""

from __future__ import annotations

import time

#: Facilities and levels by ulogd's option values (syslog.h numbers, facility << 3).
FACILITIES = {
    "LOG_DAEMON": 3 << 3, "LOG_KERN": 0, "LOG_USER": 1 << 3,
    **{f"LOG_LOCAL{i}": (16 + i) << 3 for i in range(8)},
}
LEVELS = {
    "LOG_EMERG": 0, "LOG_ALERT": 1, "LOG_CRIT": 2, "LOG_ERR": 3, "LOG_WARNING": 4,
    "LOG_NOTICE": 5, "LOG_INFO": 6, "LOG_DEBUG": 7,
}
#: ulogd's openlog() default: glibc gives it to messages of facility 0 (LOG_KERN).
OPENLOG_FACILITY = FACILITIES["LOG_DAEMON"]

_NILVALUE = "-"


def priority(facility: str, level: str) -> int:
    """The PRI ulogd's messages carry: facility 0 becomes openlog()'s LOG_DAEMON."""
    return (FACILITIES[facility] or OPENLOG_FACILITY) | LEVELS[level]


def local_header(pri: int, tag: str, pid: int, sec: float) -> str:
    """glibc's header, up to the message: `<PRI>Mmm dd HH:MM:SS tag[pid]: `."""
    return f"<{pri}>{time.strftime('%b %e %H:%M:%S', time.localtime(sec))} {tag}[{pid}]: "


def header_field(value: str, limit: int) -> str:
    """A HOSTNAME or APP-NAME: printable US-ASCII without spaces, at most `limit`."""
    clean = "".join(c for c in value if "!" <= c <= "~")[:limit]
    return clean or _NILVALUE


def sd_name(value: str) -> str:
    """An SD-ID or PARAM-NAME: printable US-ASCII except `= ] "` and space, 32 at most."""
    return "".join(c for c in value if "!" <= c <= "~" and c not in '=]"')[:32]


def sd_value(value: object) -> str:
    """A PARAM-VALUE, with `"`, `\\` and `]` escaped as RFC 5424 6.3.3 says."""
    text = str(value)
    if any(c in text for c in '"\\]'):
        text = text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")
    return text


def structured_data(sd_id: str, record: dict, fields: tuple[tuple[str, str], ...]) -> str:
    """One SD-ELEMENT with the `(record key, PARAM-NAME)` fields the record has (a name
    once: the first key that has a value), or the NILVALUE if none."""
    params = []
    seen = set()
    for key, name in fields:
        value = record.get(key)
        if value is None or value == "" or name in seen:
            continue
        seen.add(name)
        params.append(f' {name}="{sd_value(value)}"')
    if not params:
        return _NILVALUE
    return f"[{sd_id}{''.join(params)}]"


def timestamp(sec: int, usec: int) -> str:
    """RFC 3339 in UTC with microseconds: `2026-12-03T16:11:56.832792Z`."""
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(sec))}.{usec:06d}Z"


def rfc5424(pri: int, stamp: str, hostname: str, app: str, pid: int, sd: str,
            msg: str) -> str:
    """One RFC 5424 message (MSGID is the NILVALUE; MSG without a trailing newline)."""
    msg = msg.rstrip("\n")
    return f"<{pri}>1 {stamp} {hostname} {app} {pid} - {sd}" + (f" {msg}" if msg else "")


def octet_counted(message: str) -> str:
    """RFC 6587 octet-counting frame: the UTF-8 length, a space, the message."""
    return f"{len(message.encode('utf-8', 'surrogateescape'))} {message}"
