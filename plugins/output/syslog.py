"""SYSLOG: each event's `print` text to the local syslog daemon, or to a remote one.

Local (the default, as ulogd): the datagram glibc's syslog(3) would send
for ulogd's `openlog("ulogd", LOG_PID, LOG_DAEMON)` and `syslog(level |
facility, "%s", print)`, to /dev/log: the same priority (the default
facility LOG_KERN is 0, which glibc replaces by openlog()'s LOG_DAEMON: a
reader sees daemon facility, spec 4.12, O15), the tag `ulogd`, the pid of
the daemon, the text unchanged.  Unlike syslog(3), a syslog daemon that is
away or restarting loses nothing: the messages wait in the output's queue
and the socket is connected again (`write_errors`, `reconnects`).

Remote (ulogpy's own, `protocol` udp or tcp): RFC 5424 messages with the
packet's time and its main fields as structured data (`rfc5424`), over udp
(one datagram each) or tcp (octet-counted framing, RFC 6587), through the
non-blocking socket transport (PRI as in local messages, LOG_KERN given as
daemon too, so both kinds sort alike): a peer that is down at start or goes away
never stops the daemon; messages wait in memory, then (queue_policy=spool)
on disk, and every one dropped is counted.  What a tcp peer's kernel took
but the peer never read before it died is lost, as with any plain syslog
over tcp (no acknowledgement above TCP); over udp, `written` means sent.

Sample configuration::

    stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,print1:PRINTPKT,sys1:SYSLOG

    [sys1]
    facility=LOG_LOCAL2
    level=LOG_INFO
    # remote RFC 5424 instead (ulogpy only):
    # protocol=tcp
    # host=logs.example.net
    # port=6514
    # queue_policy=spool
"""

from __future__ import annotations

import errno
import os
import socket
import time

from ulogpy.plugins.output import rfc5424

from ulogpy.core.keys import STRING, U8, U16, U32, Key, keys
from ulogpy.core.plugin import DataType, Option, OutputPlugin, PluginError, Unavailable
from ulogpy.delivery.options import queue_options
from ulogpy.transports.sockets import Endpoint, SocketTransport

#: Where syslog(3) sends.
DEV_LOG = "/dev/log"
#: The tag (openlog ident) of ulogd's messages.
TAG = "ulogd"
#: A send to /dev/log that the syslog daemon does not take within this long is retried.
SEND_TIMEOUT = 2.0
#: Seconds a remote peer gets at exit to take what is still queued.
CLOSE_GRACE = 2.0
_PROTOCOLS = ("local", "udp", "tcp")
#: (record key, its type, SD-PARAM name): the structured data of remote messages, in
#: this order; the keys are optional inputs of ulogpy's own.
SD_FIELDS = (
    ("oob.prefix", STRING, "prefix"),
    ("oob.in", STRING, "in"),
    ("oob.out", STRING, "out"),
    ("ip.saddr.str", STRING, "src"),
    ("ip.daddr.str", STRING, "dst"),
    ("ip.protocol", U8, "proto"),
    ("tcp.sport", U16, "spt"),
    ("tcp.dport", U16, "dpt"),
    ("udp.sport", U16, "spt"),
    ("udp.dport", U16, "dpt"),
    ("oob.mark", U32, "mark"),
)
_SD_PARAMS = tuple((key, name) for key, _type, name in SD_FIELDS)


def _check_facility(value: str) -> str | None:
    return None if value in rfc5424.FACILITIES else f"unknown facility '{value}'"


def _check_level(value: str) -> str | None:
    return None if value in rfc5424.LEVELS else f"unknown level '{value}'"


class DevLogSink:
    """The local syslog socket, written from the output's thread (sends may block)."""

    nonblocking = False

    def __init__(self, path: str = DEV_LOG) -> None:
        self.path = path
        self.target = path
        self.sock: socket.socket | None = None
        self.stream = False

    def open(self) -> None:
        """Connect as glibc does: a datagram socket, else a stream one."""
        last = ""
        for socktype in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            sock = socket.socket(socket.AF_UNIX, socktype | socket.SOCK_CLOEXEC)
            sock.settimeout(SEND_TIMEOUT)
            try:
                sock.connect(self.path)
            except OSError as exc:
                sock.close()
                last = exc.strerror or str(exc)
                if exc.errno == errno.EPROTOTYPE:
                    continue
                break
            self.sock, self.stream = sock, socktype == socket.SOCK_STREAM
            return
        raise Unavailable(f"can't connect to {self.path}: {last}")

    def write(self, items: list[str]) -> int:
        sock = self.sock
        assert sock is not None
        done = 0
        for item in items:
            data = item.encode("utf-8", "surrogateescape")
            try:
                if self.stream:  # glibc ends each message with a NUL on a stream socket
                    sock.sendall(data + b"\0")
                else:
                    sock.send(data)
            except OSError as exc:
                if exc.errno == errno.EMSGSIZE:  # can never be sent: refused, go on
                    continue
                reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror
                raise Unavailable(f"can't send to {self.path}: {reason}", written=done) \
                    from None
            done += 1
        return done

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class SYSLOG(OutputPlugin):
    name = "SYSLOG"
    description = "Local syslog (as syslog(3)) or remote RFC 5424 syslog"
    input_type = DataType.PACKET | DataType.FLOW
    renders_text = True
    options = (
        Option("facility", str, "LOG_KERN", check=_check_facility,
               help="one of " + ", ".join(rfc5424.FACILITIES)),
        Option("level", str, "LOG_NOTICE", check=_check_level,
               help="one of " + ", ".join(rfc5424.LEVELS)),
        Option("protocol", str, "local", choices=_PROTOCOLS, ulogd=False,
               help="local: /dev/log as syslog(3); udp or tcp: RFC 5424 to host:port"),
        Option("host", str, "127.0.0.1", ulogd=False,
               help="remote syslog host name or address (protocol udp or tcp)"),
        Option("port", int, 514, ulogd=False,
               help="remote syslog port, 1-65535 (protocol udp or tcp)"),
        Option("hostname", str, "", ulogd=False,
               help="HOSTNAME of remote messages (empty: this host's name)"),
        Option("sd_id", str, "ulogd@32473", ulogd=False,
               help="SD-ID of the structured data of remote messages (name@your PEN)"),
        *queue_options(),
    )
    input_keys = keys(
        ("print", STRING),
        Key("oob.time.sec", U32, True, ulogd=False),
        Key("oob.time.usec", U32, True, ulogd=False),
        *(Key(key, type_, True, ulogd=False) for key, type_, _name in SD_FIELDS),
    )

    def configure(self) -> None:
        cfg = self.config
        self.pri = rfc5424.priority(cfg.facility, cfg.level)
        self.remote = cfg.protocol != "local"
        self.pid = os.getpid()
        self._stamp_sec = -1
        self._stamp = ""
        if not self.remote:
            self.transport = DevLogSink()
            return
        if not cfg.host:
            raise PluginError(f"option 'host': empty (protocol {cfg.protocol} needs a host "
                              "name or address)")
        if not 0 < cfg.port < 65536:
            raise PluginError(f"option 'port': {cfg.port} is not a port number (1-65535)")
        self.framed = cfg.protocol == "tcp"
        self.hostname = rfc5424.header_field(cfg.hostname or socket.gethostname(), 255)
        self.sd_id = rfc5424.sd_name(cfg.sd_id)
        if not self.sd_id:
            raise PluginError(f"option 'sd_id': {cfg.sd_id!r} has no character an SD-ID "
                              "may hold (printable ASCII except space = ] \")")
        self.transport = SocketTransport(Endpoint(cfg.protocol, host=cfg.host,
                                                  port=str(cfg.port)))

    def start(self, loop) -> None:
        self.pid = os.getpid()  # after daemonizing: the pid a reader sees
        self._stamp_sec = -1

    def stop_timeout(self) -> float:
        return CLOSE_GRACE if self.remote else super().stop_timeout()

    def render(self, record: dict) -> str:
        if self.remote:
            return self._remote(record)
        now = int(time.time())
        if now != self._stamp_sec:  # one strftime a second
            self._stamp_sec = now
            self._stamp = rfc5424.local_header(self.pri, TAG, self.pid, now)
        return self._stamp + record["print"]

    def _remote(self, record: dict) -> str:
        sec, usec = record.get("oob.time.sec"), record.get("oob.time.usec")
        if sec is None:
            now = time.time_ns() // 1000
            sec, usec = now // 1_000_000, now % 1_000_000
        message = rfc5424.rfc5424(
            self.pri, rfc5424.timestamp(sec, usec or 0), self.hostname, TAG, self.pid,
            rfc5424.structured_data(self.sd_id, record, _SD_PARAMS), record["print"])
        return rfc5424.octet_counted(message) if self.framed else message
