"""NFLOG: packets logged by `nft ... log group N` / `iptables -j NFLOG` (spec 4.1).

Start as ulogd: per-family unbind/bind (group 0 or `bind=1`), bind the
group, copy whole packets (range 0xffff), then socket buffer, queue
threshold and timeout, flags -- with ulogd's NOTICE lines.  A group held by
another process is refused with that process named.

Unlike ulogd: every readiness drains the socket (bounded) instead of one
`recv`; an overrun (ENOBUFS) is counted and grows the buffer from its
current size up to `netlink_socket_buffer_maxsize`; the kernel always adds
per-group sequence numbers, so each lost packet is counted (`lost`; a jump
too large to be a loss is a reset, `seq_resets`, see `PLAUSIBLE_LOSS`) even
though `oob.seq.local` is only exported with `seq_local=1` (so records stay
as ulogd writes them); `netlink_socket_buffer_size` is applied even without
a maximum (ulogd 2.0.8 then ignores it and logs "set to 0"), and with neither
option the buffer is large (`nlsock.DEFAULT_RCVBUF`, growing on overruns).

`network_namespace_path` (ulogd 2.0.9's option) binds the group in another network
namespace: the packets its firewall logs (`ip netns exec web nft ... log group 2`)::

    [log_web]
    group = 2
    network_namespace_path = "/run/netns/web"

(IFINDEX, later in such a stack, still names interfaces from the daemon's own
namespace: only `lo`, index 1, is sure to be the same.)
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
import time
from collections.abc import Iterable

from ulogpy.core.keys import RAW, STRING, U8, U16, U32, keys
from ulogpy.core.loopapi import LoopAPI
from ulogpy.core.plugin import DataType, Option, PluginError, counters
from ulogpy.daemon.ownlog import NOTICE
from ulogpy.netlink import nflog, nlsock
from ulogpy.netlink.attrs import MalformedMessage
from ulogpy.netlink.nflog import PartialMessage
from ulogpy.transports.netlink_input import NETNS_OPTION, NetlinkInput

log = logging.getLogger("ulogpy.nflog")
#: Families whose logger ulogd (un)binds for group 0 or bind=1: inet, inet6, bridge.
SYSTEM_FAMILIES = (socket.AF_INET, socket.AF_INET6, socket.AF_BRIDGE)
#: Seconds between two NOTICE lines about lost packets (the counter has every one).
LOSS_LOG_INTERVAL = 10.0
#: The largest jump of the group's sequence number still counted as lost packets.  Losses
#: happen while the socket is full, so the kernel drops at most what it logs while the
#: daemon does not read: 2**20 packets is a stall of ten seconds at 100,000 logged
#: packets per second.  A larger jump forward, or any jump backwards (2**32 - n in the
#: same u32 arithmetic), means numbering started over -- the kernel's instance was
#: unbound and bound again (it counts from 0, which after 2**31 packets also looks like
#: a jump forward) -- or a damaged attribute: it is counted as `seq_resets`, and the
#: next number expected follows the new one.  Why not larger: a damaged number lands
#: within the bound with odds bound / 2**32, and is then counted as up to bound lost
#: packets.  A real loss beyond it is not silent either: the kernel reports every
#: overrun (ENOBUFS, counted as `overruns`) before the datagrams that show the gap.
PLAUSIBLE_LOSS = 1 << 20
#: Sequence resets logged (NOTICE) before they are only counted.
LOGGED_RESETS = 5
_U32 = 0xFFFFFFFF
#: nlmsg_len of the first message of a datagram.
_MSG_LEN = struct.Struct("=I").unpack_from


def _range(lo: int, hi: int):
    def check(value: int) -> str | None:
        return None if lo <= value <= hi else f"must be between {lo} and {hi}"

    return check


def _not_negative(value: int) -> str | None:
    return None if value >= 0 else "must be 0 (kernel default) or positive"


class NFLOG(NetlinkInput):
    name = "NFLOG"
    socket_name = "nfnetlink_log"
    description = "Packets logged to an nfnetlink_log group (nft log group / NFLOG target)"
    counter_table = counters(
        ("lost", True, "packets the kernel numbered but never delivered"),
        ("malformed", True, "messages that could not be decoded"),
        ("malformed_attrs", True, "packets with an attribute that could not be decoded"),
        ("truncated", True, "datagrams cut short (messages lost)"),
        ("seq_resets", False, "sequence numbers that jumped too far to be losses (a reset)"),
    )
    output_type = DataType.RAW
    options = (
        Option("bufsize", int, 150000, check=_range(64, 1 << 30),
               help="bytes read per recv (not the socket buffer)"),
        Option("group", int, 0, check=_range(0, 0xFFFF), help="nflog group to bind"),
        Option("unbind", int, 1, help="1: force-unbind other loggers first (group 0 / bind=1)"),
        Option("bind", int, 0, help="1: also bind as the logger of inet, inet6 and bridge"),
        Option("seq_local", int, 0, help="1: export the group's sequence number oob.seq.local"),
        Option("seq_global", int, 0, help="1: export the global sequence number oob.seq.global"),
        Option("numeric_label", int, 0, check=_range(0, 255), help="value of raw.label"),
        Option("netlink_socket_buffer_size", int, 0, check=_not_negative,
               help="socket receive buffer in bytes"),
        Option("netlink_socket_buffer_maxsize", int, 0, check=_not_negative,
               help="grow the buffer up to this on overruns"),
        Option("netlink_qthreshold", int, 0, check=_not_negative,
               help="packets the kernel batches per message"),
        Option("netlink_qtimeout", int, 0, check=_not_negative,
               help="kernel batch flush timeout in 1/100 s"),
        Option("attach_conntrack", int, 0, help="1: attach the conntrack entry (key ct)"),
        NETNS_OPTION,
    )
    output_keys = keys(
        ("raw.mac", RAW), ("raw.pkt", RAW), ("raw.pktlen", U32), ("raw.pktcount", U32),
        ("oob.prefix", STRING), ("oob.time.sec", U32), ("oob.time.usec", U32),
        ("oob.mark", U32), ("oob.ifindex_in", U32), ("oob.ifindex_out", U32),
        ("oob.hook", U8), ("raw.mac_len", U16), ("oob.seq.local", U32),
        ("oob.seq.global", U32), ("oob.family", U8), ("oob.protocol", U16),
        ("oob.uid", U32), ("oob.gid", U32), ("raw.label", U8), ("raw.type", U16),
        ("raw.mac.saddr", RAW), ("raw.mac.addrlen", U16), ("raw", RAW), ("ct", RAW),
    )

    def configure(self) -> None:
        cfg = self.config
        #: This instance's decoder, with the message shapes it has learnt.
        self.decode = nflog.NflogDecoder().decode
        self.group = cfg.group
        #: Keys every record carries whatever the kernel sent.
        self.base = {"raw.pktcount": 1, "raw.label": cfg.numeric_label, "oob.mark": 0}
        self.export_seq = bool(cfg.seq_local)
        #: The flags ulogd would set; ulogpy always adds NFULNL_CFG_F_SEQ to count losses.
        self.user_flags = (
            (nflog.NFULNL_CFG_F_SEQ if cfg.seq_local else 0)
            | (nflog.NFULNL_CFG_F_SEQ_GLOBAL if cfg.seq_global else 0)
            | (nflog.NFULNL_CFG_F_CONNTRACK if cfg.attach_conntrack else 0)
        )
        self.sock: socket.socket | None = None
        self.loop = None
        #: The kernel numbers a group's packets from 0 once NFULNL_CFG_F_SEQ is set.
        self.next_seq = 0
        self.last_loss_log = 0.0
        self.logged_lost = 0
        self.early: list[bytes] = []

    # -- start / stop ---------------------------------------------------------
    def start(self, loop: LoopAPI) -> None:
        cfg = self.config
        self.loop = loop
        try:
            self.sock = self.open_netlink()
        except OSError as exc:
            raise PluginError(f"cannot open nfnetlink_log socket: {exc.strerror}") from None
        try:
            self._setup(cfg)
        except BaseException:
            self.sock.close()
            self.sock = None
            raise
        self.sock.setblocking(False)
        loop.add_reader(self.sock, self.on_readable)
        if self.early:  # packets that came in while the kernel was being configured
            loop.call_later(0, self._replay_early)

    def _request(self, request: bytes) -> None:
        nlsock.request_ack(self.sock, request, self.early, bufsize=self.config.bufsize)

    def _setup(self, cfg) -> None:
        seq = nlsock.next_seq
        if cfg.group == 0 or cfg.bind:
            for pf in SYSTEM_FAMILIES:
                if cfg.unbind > 0:
                    log.log(NOTICE, "forcing unbind of existing log handler for protocol %d", pf)
                    try:
                        self._request(nflog.build_pf_unbind(seq(), pf))
                    except OSError as exc:
                        raise PluginError(
                            f"unable to force-unbind existing log handler for protocol {pf}: "
                            f"{exc.strerror}") from None
                log.debug("binding to protocol family %d", pf)
                try:
                    self._request(nflog.build_pf_bind(seq(), pf))
                except OSError as exc:
                    raise PluginError(
                        f"unable to bind to protocol family {pf}: {exc.strerror}") from None
        log.debug("binding to log group %d", cfg.group)
        try:
            self._request(nflog.build_bind(seq(), cfg.group))
        except OSError as exc:
            raise PluginError(self._bind_error(exc)) from None
        try:
            self._request(nflog.build_mode(seq(), cfg.group))
        except OSError as exc:
            raise PluginError(
                f"unable to set copy mode for log group {cfg.group}: {exc.strerror}") from None

        self.size_buffer()
        for value, build, what in (
            (cfg.netlink_qthreshold, nflog.build_qthreshold, "threshold"),
            (cfg.netlink_qtimeout, nflog.build_timeout, "timeout"),
        ):
            if not value:
                continue
            try:
                self._request(build(seq(), cfg.group, value))
            except OSError as exc:
                log.log(NOTICE, "NFLOG netlink queue %s can't be set to %d", what, value)
                log.debug("%s: kernel answered: %s", self.id, exc.strerror)
            else:
                log.log(NOTICE, "NFLOG netlink queue %s has been set to %d", what, value)
        self._set_flags()

    def _set_flags(self) -> None:
        """ulogd's flags plus NFULNL_CFG_F_SEQ; without what the kernel refuses, if it does."""
        wanted = self.user_flags | nflog.NFULNL_CFG_F_SEQ
        try:
            self._request(nflog.build_flags(nlsock.next_seq(), self.group, wanted))
            return
        except OSError as exc:
            if self.user_flags:
                log.error("unable to set flags 0x%x", self.user_flags)
            reason = exc.strerror
        # Kernels without CONFIG_NETFILTER_NETLINK_GLUE_CT refuse the conntrack flag, and
        # ulogd then gets no flag at all; keep the sequence numbers at least.
        fallback = wanted & ~nflog.NFULNL_CFG_F_CONNTRACK
        try:
            if fallback == wanted:
                raise OSError(reason)
            self._request(nflog.build_flags(nlsock.next_seq(), self.group, fallback))
        except OSError:
            log.error("%s: no sequence numbers from the kernel (%s): lost packets will not "
                      "be counted", self.id, reason)

    def _bind_error(self, exc: OSError) -> str:
        """ulogd's `unable to bind to log group N`, naming who holds the group if known."""
        group = self.config.group
        if exc.errno not in (errno.EPERM, errno.EBUSY, errno.EEXIST):
            return f"unable to bind to log group {group}: {exc.strerror}"
        owners = []
        portid = nflog.group_portid(group)
        if portid is not None:
            inode = nlsock.netlink_socket_inode(portid)
            if inode is not None:
                owners = nlsock.socket_owners(inode)
        if any(pid == os.getpid() for pid, _comm in owners):
            return (f"NFLOG group {group} is already bound by another NFLOG instance of this "
                    "configuration: each group can be read by one instance (share its id "
                    "between stacks instead)")
        if owners:
            who = ", ".join(f"pid {pid} ({comm})" for pid, comm in owners)
        elif portid is not None:
            who = f"netlink port {portid}, process not found"
        else:
            who = "owner unknown"
        return f"NFLOG group {group} is already bound by another process: {who}"

    def stop(self) -> None:
        if self.sock is None:
            return
        if self.loop is not None:
            self.loop.remove_reader(self.sock)
        try:  # closing releases the group anyway; say it explicitly as ulogd does
            self.sock.send(nflog.build_unbind(nlsock.next_seq(), self.group, ack=False))
        except OSError:
            pass
        self.sock.close()
        self.sock = None

    # -- reading --------------------------------------------------------------
    def recv_size(self) -> int:
        return self.config.bufsize

    def _replay_early(self) -> None:
        early, self.early = self.early, []
        receive = self.receive  # the instance's: the daemon's guard wraps it
        for data in early:
            receive(data)

    def receive(self, data: bytes) -> None:
        """Every packet message of one datagram, in order."""
        now = None
        decode = self.decode
        base = self.base
        emit = self.emit
        export_seq = self.export_seq
        if len(data) >= nlsock.NLMSG_HDRLEN and _MSG_LEN(data)[0] == len(data):
            spans: Iterable = ((0, len(data)),)  # one packet (a quiet group, a timer flush)
        else:
            spans = nlsock.iter_messages(data)
        try:
            for offset, length, *_ in spans:
                try:
                    rec = decode(data, offset, length, base)
                except PartialMessage as exc:
                    self.counters.add("malformed_attrs")
                    rec = exc.values
                except MalformedMessage:
                    self.counters.add("malformed")
                    continue
                if rec is None:
                    continue  # NLMSG_DONE closing a batch, or not a packet
                # counted always, exported with seq_local=1 only
                seq = rec.get("oob.seq.local") if export_seq else rec.pop("oob.seq.local", None)
                if seq is not None:
                    if seq != self.next_seq:
                        self._gap(seq)
                    self.next_seq = (seq + 1) & _U32
                if "oob.time.sec" not in rec:
                    if now is None:
                        ns = time.time_ns()
                        now = (ns // 1_000_000_000 & _U32, ns // 1000 % 1_000_000)
                    rec["oob.time.sec"], rec["oob.time.usec"] = now
                emit(rec)
        except MalformedMessage:
            if len(data) < self.config.bufsize:
                self.counters.add("malformed")
                return
            # recv cut the datagram at bufsize: the kernel sent more than that at once.
            self.counters.add("truncated")
            if self.counters.get("truncated") == 1:
                log.error("%s: a datagram from the kernel was longer than bufsize=%d; the "
                          "packets at its end were lost: raise bufsize", self.id,
                          self.config.bufsize)

    # -- losses ---------------------------------------------------------------
    def _gap(self, seq: int) -> None:
        """Count the packets the kernel numbered but never delivered (the caller then
        expects `seq + 1`, whether this was a loss or a reset)."""
        missing = (seq - self.next_seq) & _U32
        if missing > PLAUSIBLE_LOSS:  # numbering started over (or backwards): no loss
            self.counters.add("seq_resets")
            if self.counters.get("seq_resets") <= LOGGED_RESETS:
                log.log(NOTICE, "%s: sequence number of group %d jumped from %d to %d: "
                        "counted as a reset (seq_resets), not as lost packets", self.id,
                        self.group, self.next_seq, seq)
            return
        self.counters.add("lost", missing)
        now = time.monotonic()
        if now - self.last_loss_log >= LOSS_LOG_INTERVAL:
            total = self.counters.get("lost")
            log.log(NOTICE, "%s: %d packets of group %d lost by the kernel (%d in total)",
                    self.id, total - self.logged_lost, self.group, total)
            self.last_loss_log = now
            self.logged_lost = total

