"""`ulogpy nat-lookup`: argument parsing, the lookup over every source, exit status.

Exit 0 when at least one flow matches, 1 when none does, 2 on an error
(bad argument, unreadable source) with one clear line on stderr.
"""

from __future__ import annotations

import argparse
import sys

from ulogpy.tools.natlookup.errors import LookupFailed
from ulogpy.tools.natlookup.flows import (
    DEFAULT_WINDOW,
    PORTED,
    Flow,
    Query,
    normalize_ip,
    proto_name,
    proto_number,
    rank,
)
from ulogpy.tools.natlookup.output import endpoint, render_json, render_table
from ulogpy.tools.natlookup.timeparse import parse_time, rfc3339

PROG = "ulogpy nat-lookup"
DESCRIPTION = """\
Which inside host used the public IP:PORT at TIME?  Reads the conntrack
history (NFCT records logged through IP2STR) and lists the flows whose NAT
mapping used that public address and port within TIME +/- WINDOW, the flow
that held it at TIME first.
"""
EPILOG = """\
TIME: RFC 3339 with Z or an offset (2026-11-26T21:42:16Z, 2026-11-26T22:42:16+01:00),
  or epoch seconds; without a zone it is local time, and the output says which zone.
SRC (repeatable):
  sqlite:///abs/path.db[?table=NAME]   ulogd's ulog2_ct columns, one row per flow
  postgresql://user@host/db[?table=NAME]  ulogd's ulog2_ct (INSERT_CT / INSERT_OR_REPLACE_CT)
  mysql://user[:pass]@host/db[?socket=PATH&table=NAME]  ulogd's MySQL ulog2_ct
                                       (binary addresses; `ulogpy db init --mysql`)
  json:PATH                            NFCT JSON lines; globs, rotated and .gz files
  clickhouse://[user[:pass]@]host[:port][,host2...]/db[?table=NAME]  the CLICKHOUSE
                                       output's table (default ulog_nat; only the shard of
                                       --ip is read; `source` ends in #FIREWALL)
  Without ?table=, SQLite and PostgreSQL find the table by ulogd's ct columns.
  Without --source: the JSON/SQLITE3/PGSQL/MYSQL/CLICKHOUSE outputs of the NFCT stacks of -c CONFIG
  (default: /etc/ulogpy.toml if present, else the shipped configuration).
A flow holds its public port from its start to its DESTROY (or now, if still open).
  The kernel stamps only DESTROY events, so a logged start is the time the NEW event
  was received, a little late: a flow counts from 1 s before its logged start.
Portless protocols (icmp, gre, ...): ulogd logs no ICMP id, so --port is not needed
  and the public address alone is matched.
--json: an array, best match first, of objects with inside_ip, inside_port, public_ip,
  public_port, remote_ip, remote_port, proto, start, end (RFC 3339 UTC; end null while
  open), orig_bytes, reply_bytes, zone, mark (null when unknown), source, held (the flow
  held the port at TIME) and distance (seconds from TIME to the flow, 0 when held).
--batch FILE|-: one complaint a line, CSV `ip,port,time[,proto[,remote]]` (a header
  line is allowed) or JSON objects with those keys; one JSON line out per complaint, in
  order: {"line", "ip", "port", "at", "matches": [as --json]} or {"line", "error"};
  every source stays open for the whole batch.
Exit status: 0 a flow matched, 1 none did, 2 error.
"""


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=PROG, description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ip", metavar="PUBLIC_IP", help="the public (NAT) address")
    ap.add_argument("--port", type=_port, metavar="PUBLIC_PORT", help="the public port")
    ap.add_argument("--at", metavar="TIME", help="when it was seen (see below)")
    ap.add_argument("--proto", metavar="PROTO", help="tcp, udp, icmp, sctp, ... or a number")
    ap.add_argument("--window", type=_window, default=DEFAULT_WINDOW, metavar="SECONDS",
                    help=f"match flows within TIME +/- SECONDS (default {DEFAULT_WINDOW:g}: "
                         "absorbs clock skew between the complaint and this host)")
    ap.add_argument("--remote", metavar="IP[:PORT]",
                    help="the remote server (IPv6 with a port: [addr]:port)")
    ap.add_argument("--source", action="append", metavar="SRC", help="a history (see below)")
    ap.add_argument("--json", action="store_true", help="print a JSON array of matches")
    ap.add_argument("--batch", metavar="FILE",
                    help="many complaints, one a line (CSV ip,port,time[,proto[,remote]] or "
                         "JSON lines), '-' for stdin: one JSON line of matches each")
    ap.add_argument("-c", "--configfile", "--config", dest="config", metavar="CONFIG",
                    help="take the history from this configuration (ulogd.conf or .toml)")
    return ap


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return int(text)


def _window(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0")
    return value


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else 2
    if args.batch is not None:
        return _batch(args)
    if args.ip is None or args.at is None:
        sys.stderr.write(f"{PROG}: --ip and --at are required (or --batch FILE)\n")
        return 2
    sources: list = []
    try:
        query, notes = make_query(args)
        sources = pick_sources(args, notes)
        flows: list[Flow] = []
        for source in sources:
            flows.extend(source.lookup(query))
            notes.extend(getattr(source, "notes", []))
    except LookupFailed as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        return 2
    finally:
        for source in sources:  # the sources that keep a connection open for batches
            close = getattr(source, "close", None)
            if close is not None:
                close()
    matches = rank(flows, query)
    for note in notes:
        sys.stderr.write(f"{PROG}: note: {note}\n")
    if args.json:
        sys.stdout.write(render_json(matches, query))
    else:
        sys.stdout.write(_heading(query, len(matches)))
        if matches:
            sys.stdout.write(render_table(matches, query))
    return 0 if matches else 1


def _batch(args: argparse.Namespace) -> int:
    from ulogpy.tools.natlookup.batch import run_batch

    if args.ip or args.at or args.port is not None:
        sys.stderr.write(f"{PROG}: --batch takes ip, port and time from its lines, not from "
                         "--ip/--port/--at\n")
        return 2
    notes: list[str] = []
    try:
        sources = pick_sources(args, notes)
        if args.batch == "-":
            code = run_batch(sys.stdin, sources, args.window)
        else:
            try:
                stream = open(args.batch, encoding="utf-8", errors="replace")  # noqa: SIM115
            except OSError as exc:
                raise LookupFailed(f"--batch {args.batch}: {exc.strerror}") from None
            with stream:
                code = run_batch(stream, sources, args.window)
    except LookupFailed as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        return 2
    for note in notes:
        sys.stderr.write(f"{PROG}: note: {note}\n")
    return code


def make_query(args: argparse.Namespace) -> tuple[Query, list[str]]:
    notes: list[str] = []
    when = parse_time(args.at)
    if when.assumed_zone:
        notes.append(f"--at {args.at!r} has no zone: read as local time ({when.assumed_zone})")
    proto = proto_number(args.proto) if args.proto is not None else None
    port = args.port
    if proto is not None and proto not in PORTED:
        if port is not None:
            notes.append(f"{proto_name(proto)} flows have no ports in the log: --port ignored")
        port = None
    elif port is None:
        raise LookupFailed("--port is required (except with a portless --proto such as icmp)")
    remote_ip, remote_port = _remote(args.remote) if args.remote else (None, None)
    query = Query(ip=normalize_ip(args.ip, "--ip"), port=port, at=when.epoch,
                  window=args.window, proto=proto, remote_ip=remote_ip,
                  remote_port=remote_port)
    return query, notes


def _remote(text: str) -> tuple[str, int | None]:
    """`IP`, `IP:PORT`, `[IPv6]:PORT` or a bare IPv6 address."""
    host, port = text, None
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise LookupFailed(f"--remote {text!r}: use IP, IP:PORT or [IPv6]:PORT")
        port = rest[1:] or None
    elif text.count(":") == 1:
        host, port = text.split(":")
    if port is not None and (not port.isdigit() or int(port) > 65535):
        raise LookupFailed(f"--remote {text!r}: {port!r} is not a port number (0-65535)")
    return normalize_ip(host, "--remote"), int(port) if port is not None else None


def pick_sources(args: argparse.Namespace, notes: list[str]) -> list:
    from ulogpy.tools.natlookup.sources import config_sources, parse_source

    if args.source:
        return [parse_source(s) for s in args.source]
    name, sources, skipped = config_sources(args.config)  # as the daemon chooses it
    notes.extend(skipped)
    if not sources:
        raise LookupFailed(f"{name}: no NFCT stack writes a history (through IP2STR to "
                           "JSON, SQLITE3 or PGSQL; or to MYSQL or CLICKHOUSE); give --source")
    return sources


def _heading(q: Query, count: int) -> str:
    what = endpoint(q.ip, q.port)
    if q.proto is not None:
        what += f" {proto_name(q.proto)}"
    if q.remote_ip is not None:
        what += f" to {endpoint(q.remote_ip, q.remote_port)}"
    found = f"{count} flow(s)" if count else "no flow"
    return f"{found} used {what} within {q.window:g} s of {rfc3339(q.at)}\n"
