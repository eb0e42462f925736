"""SYSLOG's message text and option checks (the bytes are compared with ulogd live).

tests/live/test_syslog.py compares the local datagrams with ulogd's and
checks the remote messages as rsyslog parses them; here the corner cases
that traffic does not reach: escaping in structured data, octet counts of
non-ASCII text, a record with no structured field, and the option errors.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from ulogpy.plugins.output import rfc5424
from ulogpy.plugins.output.syslog import SD_FIELDS

from tests.ulogd_ref import ULOGPY

PARAMS = tuple((key, name) for key, _type, name in SD_FIELDS)


def test_priority_like_glibc() -> None:
    """Facility 0 (LOG_KERN) takes openlog()'s LOG_DAEMON, the others stay."""
    assert rfc5424.priority("LOG_KERN", "LOG_NOTICE") == 3 * 8 + 5
    assert rfc5424.priority("LOG_DAEMON", "LOG_NOTICE") == 3 * 8 + 5
    assert rfc5424.priority("LOG_USER", "LOG_EMERG") == 8
    assert rfc5424.priority("LOG_LOCAL7", "LOG_DEBUG") == 23 * 8 + 7


def test_structured_data_escapes_and_skips_absent_fields() -> None:
    record = {"oob.prefix": 'a "b" \\c] ', "ip.saddr.str": "10.0.0.1", "tcp.sport": 80,
              "udp.sport": 53, "oob.in": ""}
    assert rfc5424.structured_data("x@1", record, PARAMS) == \
        '[x@1 prefix="a \\"b\\" \\\\c\\] " src="10.0.0.1" spt="80"]'
    assert rfc5424.structured_data("x@1", {"print": "p"}, PARAMS) == "-"


def test_message_and_octet_count() -> None:
    msg = rfc5424.rfc5424(29, "2026-01-02T03:04:05.000006Z", "host", "ulogd", 7, "-",
                          "caf\u00e9 \n")
    assert msg == "<29>1 2026-01-02T03:04:05.000006Z host ulogd 7 - - caf\u00e9 "
    framed = rfc5424.octet_counted(msg)
    count, rest = framed.split(" ", 1)
    assert rest == msg and int(count) == len(msg.encode()) == len(msg) + 1
    assert rfc5424.timestamp(0, 5) == "1970-01-01T00:00:00.000005Z"
    assert rfc5424.header_field("a b\u00e9c", 255) == "abc"
    assert rfc5424.header_field("", 255) == "-"


@pytest.mark.parametrize(("lines", "words"), [
    ("facility=LOG_KERNEL", "unknown facility 'LOG_KERNEL'"),
    ("level=LOG_WARN", "unknown level 'LOG_WARN'"),
    ("protocol=tls", "protocol"),
    ("protocol=tcp\nport=0", "option 'port': 0 is not a port number (1-65535)"),
    ("protocol=udp\nhost=\"\"", "option 'host': empty"),
    ('protocol=tcp\nsd_id=" ="', "option 'sd_id'"),
])
def test_bad_options_stop_start_up(tmp_path: Path, lines: str, words: str) -> None:
    conf = tmp_path / "u.conf"
    conf.write_text("[global]\nstack=u1:UNIXSOCK,base1:BASE,ip2str1:IP2STR,p1:PRINTPKT,s1:SYSLOG\n"
                    f"[u1]\nsocket_path={tmp_path}/u.sock\n[s1]\n{lines}\n")
    r = subprocess.run([ULOGPY, "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert words in r.stderr and "[s1]" in r.stderr
    assert "Traceback" not in r.stderr
