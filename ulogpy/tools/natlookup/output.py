"""Printing matches: a table for people, a JSON array for scripts (a stable interface)."""

from __future__ import annotations

from typing import Any

import orjson

from ulogpy.tools.natlookup.flows import Flow, Query, proto_name
from ulogpy.tools.natlookup.timeparse import rfc3339


def as_dict(f: Flow, q: Query) -> dict[str, Any]:
    distance = f.distance(q.at)
    return {
        "inside_ip": f.inside_ip, "inside_port": f.inside_port,
        "public_ip": f.public_ip, "public_port": f.public_port,
        "remote_ip": f.remote_ip, "remote_port": f.remote_port,
        "proto": proto_name(f.proto),
        "start": rfc3339(f.start), "end": rfc3339(f.end),
        "orig_bytes": f.orig_bytes, "reply_bytes": f.reply_bytes,
        "zone": f.zone, "mark": f.mark,
        "source": f.source,
        # Whether the flow held the port at TIME (allowing START_SLACK_S before its logged
        # start), else how many seconds away it was.
        "held": distance == 0, "distance": round(distance, 6),
    }


def render_json(flows: list[Flow], q: Query) -> str:
    return orjson.dumps([as_dict(f, q) for f in flows], option=orjson.OPT_INDENT_2).decode() \
        + "\n"


def endpoint(ip: str | None, port: int | None) -> str:
    if ip is None:
        return "?"
    host = f"[{ip}]" if ":" in ip and port is not None else ip
    return host if port is None else f"{host}:{port}"


def render_table(flows: list[Flow], q: Query) -> str:
    head = ["#", "INSIDE", "REMOTE", "PROTO", "START (UTC)", "END (UTC)", "AT TIME",
            "BYTES OUT/IN", "SOURCE"]
    rows = [head]
    for n, f in enumerate(flows, 1):
        d = f.distance(q.at)
        where = "held" if d == 0 else (f"{d:.3f}s before" if f.bounds()[0] > q.at
                                       else f"{d:.3f}s after")
        rows.append([
            str(n), endpoint(f.inside_ip, f.inside_port), endpoint(f.remote_ip, f.remote_port),
            proto_name(f.proto) or "?", _short(f.start, "unknown"), _short(f.end, "open"),
            where, f"{_num(f.orig_bytes)}/{_num(f.reply_bytes)}", f.source,
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    return "\n".join(lines) + "\n"


def _short(epoch: float | None, missing: str) -> str:
    text = rfc3339(epoch)
    return missing if text is None else text.replace("T", " ").removesuffix("Z")


def _num(value: int | None) -> str:
    return "?" if value is None else str(value)
