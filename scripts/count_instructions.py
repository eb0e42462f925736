#!/usr/bin/env python3
"""Instructions per event of the whole in-process path, counted by callgrind.

    .venv/bin/python scripts/count_instructions.py [nfct|nflog|nfct-text|nflog-text ...]

Why: CPU time on the shared VM varies by half from one run to the next, for
ulogd as for ulogpy; an instruction count does not.  This runs the stacks of
`scripts/profile_path.py` (the bench's, fed the recorded kernel messages: the
reader, the filters, the output's queue, its writer thread and the file) under
`valgrind --tool=callgrind` twice, over the recorded messages once and 301
times, and prints the difference per event: start-up and imports cancel out.
PYTHONHASHSEED is pinned so that both runs hash alike.  It says which change
costs what; the comparison with ulogd stays `scripts/bench`'s.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PASSES = 301


def feed(scenario: str, passes: int) -> int:
    """Run the path over the recorded messages `passes` times; the events per pass."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import profile_path as pp

    from ulogpy.daemon.runner import Runner

    with tempfile.TemporaryDirectory() as tmp:
        pipeline = pp.build(scenario, Path(tmp))
        messages = ([bytes(d[o:o + n]) for d, o, n in pp.nfct_messages()]
                    if scenario.startswith("nfct") else pp.nflog_datagrams())
        receive = pipeline.inputs[0].receive
        runner = Runner(pipeline, None)
        for out in pipeline.outputs:
            runner.open(out)
        runner.start()
        for _ in range(passes):
            for i, message in enumerate(messages, 1):
                receive(message)
                if i % 256 == 0:
                    runner.after_batch()
            runner.after_batch()
        buffer = runner.writers[pipeline.stacks[0].output].buffer
        while buffer.depth():
            time.sleep(0.001)
        runner.shutdown()
    return len(messages)


def counted(scenario: str, passes: int) -> tuple[int, int]:
    """(instructions callgrind counted, events per pass) of one run of `feed`."""
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out",
             sys.executable, __file__, "--feed", scenario, str(passes)],
            capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    total = re.search(r"Collected : (\d+)", out.stderr)
    events = re.search(r"^events (\d+)$", out.stdout, re.M)
    if out.returncode or not total or not events:
        raise SystemExit(f"callgrind run failed:\n{out.stderr[-2000:]}")
    return int(total.group(1)), int(events.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenarios", nargs="*",
                    help="nfct, nflog, nfct-text, nflog-text (default: nfct, nflog)")
    ap.add_argument("--feed", nargs=2, metavar=("SCENARIO", "PASSES"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.feed:
        print(f"events {feed(args.feed[0], int(args.feed[1]))}")
        return 0
    for scenario in args.scenarios or ["nfct", "nflog"]:
        if scenario not in ("nfct", "nflog", "nfct-text", "nflog-text"):
            ap.error(f"unknown scenario {scenario!r} (nfct, nflog, nfct-text or nflog-text)")
        once, events = counted(scenario, 1)
        many, _ = counted(scenario, PASSES)
        per_event = (many - once) / ((PASSES - 1) * events)
        print(f"{scenario}: {per_event:,.0f} instructions per event")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
