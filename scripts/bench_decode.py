#!/usr/bin/env python3
"""Measure ctnetlink decode speed on the recorded fixtures.

    PYTHONPATH=. python scripts/bench_decode.py [--seconds 3]

Splits every recorded datagram into messages once, then decodes all
conntrack messages in a loop (as the event loop would, one `decode_ct` per
message) and prints events per second.  Also reports the DESTROY-only rate,
the message kind the daemon decodes most in its default (hash) mode.  Each
message shape is learnt on its first decode (`conntrack.py`, "shapes"), so
these are the rates of the fast path; `--walker` measures the generic
attribute walker alone instead.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ulogpy.netlink.conntrack import EVENT_DESTROY, decode_ct, reset_shapes
from ulogpy.netlink.nlsock import iter_messages

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "conntrack"


def load(path: Path) -> list[tuple[bytes, int, int]]:
    msgs = []
    for line in path.read_text().splitlines():
        data = bytes.fromhex(json.loads(line)["hex"])
        for off, mlen, *_ in iter_messages(data):
            if decode_ct(data, off, mlen) is not None:
                msgs.append((data, off, mlen))
    return msgs


def rate(msgs: list[tuple[bytes, int, int]], seconds: float) -> float:
    dec = decode_ct
    n = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        for data, off, mlen in msgs:
            dec(data, off, mlen)
        n += len(msgs)
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--fixtures", type=Path, default=FIXTURES / "messages.jsonl")
    ap.add_argument("--walker", action="store_true", help="no shapes: the generic walker")
    args = ap.parse_args()
    reset_shapes(enabled=not args.walker)
    msgs = load(args.fixtures)
    destroys = [m for m in msgs if decode_ct(*m).event == EVENT_DESTROY]
    print(f"{len(msgs)} conntrack messages ({len(destroys)} DESTROY) from {args.fixtures}")
    print(f"all messages: {rate(msgs, args.seconds):,.0f} events/s")
    print(f"DESTROY only: {rate(destroys, args.seconds):,.0f} events/s")


if __name__ == "__main__":
    main()
