"""GRAPHITE: accounting sums (NFACCT) to carbon, in Graphite's plaintext protocol.

Each record becomes ulogd 2.0.8's two lines, `<prefix>.<sum.name>.pkts <n> <ts>`
and `<prefix>.<sum.name>.bytes <n> <ts>` (an empty prefix leaves the leading
dot, as in ulogd), sent over TCP.  Unlike ulogd, a carbon that is down at
start or goes away later costs no stack: the lines wait in the output's
queue (`queue_policy`) and the connection is retried
(`ulogpy.transports.sockets`, as JSON's tcp mode).

Sample configuration::

    stack=acct1:NFACCT,graphite1:GRAPHITE

    [acct1]
    pollinterval=60

    [graphite1]
    host="127.0.0.1"
    port="2003"
    prefix="netfilter.nfacct"
"""

from __future__ import annotations

import socket
import time

from ulogpy.core.keys import STRING, U32, U64, keys
from ulogpy.core.plugin import DataType, Option, OutputPlugin, PluginError
from ulogpy.delivery.options import queue_options
from ulogpy.transports.sockets import Endpoint, SocketTransport

#: Seconds a connected carbon gets at exit to take what is still queued.
CLOSE_GRACE = 2.0


class GRAPHITE(OutputPlugin):
    name = "GRAPHITE"
    description = "Graphite plaintext protocol (carbon) over TCP"
    input_type = DataType.SUM
    renders_text = True
    options = (
        Option("host", str, "", help="carbon host name or address"),
        Option("port", str, "", help="carbon plaintext port number or service name"),
        Option("prefix", str, "", help="put before every metric name (with a dot)"),
        *queue_options(),
    )
    input_keys = keys(("sum.name", STRING), ("sum.pkts", U64), ("sum.bytes", U64),
                      ("oob.time.sec", U32))

    def configure(self) -> None:
        cfg = self.config
        if not cfg.host:
            raise PluginError("option 'host': empty (the carbon host name or address)")
        port = cfg.port.strip()
        if not port:
            raise PluginError("option 'port': empty (carbon's plaintext port, usually 2003)")
        if port.isdigit():
            if not 0 < int(port) < 65536:
                raise PluginError(f"option 'port': {cfg.port} is not a port number (1-65535)")
        else:
            try:
                socket.getservbyname(port, "tcp")
            except OSError:
                raise PluginError(f"option 'port': unknown tcp service '{cfg.port}' (a port "
                                  "number 1-65535 or a name from /etc/services)") from None
        self.transport = SocketTransport(Endpoint("tcp", host=cfg.host, port=port))
        self.prefix = cfg.prefix + "."

    def stop_timeout(self) -> float:
        return CLOSE_GRACE

    def render(self, record: dict) -> str:
        sec = record.get("oob.time.sec")
        if sec is None:
            sec = int(time.time())
        name = self.prefix + record["sum.name"]
        return f"{name}.pkts {record['sum.pkts']} {sec}\n{name}.bytes {record['sum.bytes']} {sec}\n"
