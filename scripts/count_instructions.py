#!/usr/bin/env python3
"""Instructions per event of the whole in-process path, counted by callgrind.

    .venv/bin/python scripts/count_instructions.py [--stages] [nfct|nflog|nfct-text|nflog-text ...]

Why: CPU time on the shared VM varies by half from one run to the next, for
ulogd as for ulogpy; an instruction count does not.  This runs the stacks of
`scripts/profile_path.py` (the bench's, fed the recorded kernel messages: the
reader, the filters, the output's queue, its writer thread and the file) under
`valgrind --tool=callgrind` twice, over the recorded messages once and 301
times, and prints the difference per event: start-up and imports cancel out.
PYTHONHASHSEED is pinned so that both runs hash alike.  It says which change
costs what; the comparison with ulogd stays `scripts/bench`'s.

With `--stages` it also counts the stages of `scripts/profile_path.py` one by one,
each run alone over the records the stage before it gave (decode, the input's own
work, each filter on a copy of its record, the output's render), and prints what the
whole path spends beyond their sum: the guard, the runner's chain, the queue, the
hand-over, the writer thread and the file.  The same stages as profile_path's,
without the noise.
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
        messages = pp.scenario_feed(scenario, pipeline)[0]
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


def stage_feed(scenario: str, stage: str, passes: int) -> int:
    """Run one stage alone over its inputs `passes` times; the items per pass.

    `stage`: decode, input (decode and the input plugin's own work, nothing emitted),
    filter N (the stack's N-th filter on a copy of each record as it reaches that
    filter), render (the output's line).
    """
    sys.path.insert(0, str(ROOT / "scripts"))
    import profile_path as pp

    with tempfile.TemporaryDirectory() as tmp:
        pipeline = pp.build(scenario, Path(tmp))
        inp, stack = pipeline.inputs[0], pipeline.stacks[0]
        messages, decode, run_input = pp.scenario_feed(scenario, pipeline)
        records: list[dict] = []
        inp.emit = records.append
        for message in messages:
            run_input(message)
        inp.emit = lambda record: None
        stages: dict[str, tuple] = {"decode": (decode, messages), "input": (run_input, messages)}
        for i, filt in enumerate(stack.filters):
            stages[f"filter {i}"] = (filt.interp, records)
            records = [dict(r) for r in records]
            for record in records:
                filt.interp(record)
        stages["render"] = (stack.output.render, records)
        fn, items = stages[stage]
        if stage.startswith("filter"):
            # A filter changes its record: each pass gets fresh copies, made for PASSES
            # passes whatever `passes` is, so that the copying cancels out too.
            batches = [[dict(r) for r in items] for _ in range(PASSES)][:passes]
        else:
            batches = [items] * passes
        for batch in batches:
            for item in batch:
                fn(item)
        return len(items)


def stage_names(scenario: str) -> list[tuple[str, str]]:
    """(stage, label) of every stage of `scenario`'s stack, in path order."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import profile_path as pp

    with tempfile.TemporaryDirectory() as tmp:
        stack = pp.build(scenario, Path(tmp)).stacks[0]
        return [("decode", "decode (codec)"), ("input", "input plugin, rest"),
                *((f"filter {i}", f"filter {f}") for i, f in enumerate(stack.filters)),
                ("render", f"{stack.output.name} render")]


def counted(scenario: str, passes: int, stage: str | None = None) -> tuple[int, int]:
    """(instructions callgrind counted, events per pass) of one run of `feed`, or of
    `stage_feed` for `stage`."""
    what = ["--feed", scenario, str(passes)] if stage is None else [
        "--feed-stage", scenario, stage, str(passes)]
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out",
             sys.executable, __file__, *what],
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
    ap.add_argument("--stages", action="store_true",
                    help="also count each stage alone, and what the whole path adds")
    ap.add_argument("--feed", nargs=2, metavar=("SCENARIO", "PASSES"), help=argparse.SUPPRESS)
    ap.add_argument("--feed-stage", nargs=3, metavar=("SCENARIO", "STAGE", "PASSES"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.feed:
        print(f"events {feed(args.feed[0], int(args.feed[1]))}")
        return 0
    if args.feed_stage:
        scenario, stage, passes = args.feed_stage
        print(f"events {stage_feed(scenario, stage, int(passes))}")
        return 0
    for scenario in args.scenarios or ["nfct", "nflog"]:
        if scenario not in ("nfct", "nflog", "nfct-text", "nflog-text"):
            ap.error(f"unknown scenario {scenario!r} (nfct, nflog, nfct-text or nflog-text)")
        whole = per_event(scenario)
        print(f"{scenario}: {whole:,.0f} instructions per event")
        if args.stages:
            print_stages(scenario, whole)
    return 0


def per_event(scenario: str, stage: str | None = None) -> float:
    """Instructions per event (per item, for a stage): the runs of 1 and PASSES passes,
    differenced, so that start-up and imports cancel out."""
    once, events = counted(scenario, 1, stage)
    many, _ = counted(scenario, PASSES, stage)
    return (many - once) / ((PASSES - 1) * events)


def print_stages(scenario: str, whole: float) -> None:
    """Each stage's count, their sum, and what the whole path spends beyond it."""
    rows = [(label, per_event(scenario, stage)) for stage, label in stage_names(scenario)]
    rows[1] = (rows[1][0], rows[1][1] - rows[0][1])  # the input's own work, decode apart
    total = sum(n for _label, n in rows)
    for label, n in [*rows, ("sum of the stages", total),
                     ("guard, runner, queue, writer, file", whole - total)]:
        print(f"  {label:<38} {n:>8,.0f}")


if __name__ == "__main__":
    raise SystemExit(main())
