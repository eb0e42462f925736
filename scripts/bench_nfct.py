#!/usr/bin/env python3
"""Side-by-side CPU cost of ulogd 2.0.8 and ulogpy on the same conntrack burst.

Both daemons run in one fresh network namespace with the same stack
(NFCT hash_enable=0 event_mask=5 -> IP2STR -> JSON, 64 MiB socket buffers so
the figure is CPU, not loss).  A generator pinned to another CPU opens N UDP
flows, then the table is flushed: 2N events.  For each daemon it reports the
records written, events lost, CPU seconds (utime+stime from /proc) and CPU
microseconds per event, then the ulogpy/ulogd ratio.  Median of --runs.

    sudo .venv/bin/python scripts/bench_nfct.py --flows 20000 --runs 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.netns import Netns, wait_until  # noqa: E402
from tests.ulogd_ref import ULOGPY, UlogdProcess, read_lines  # noqa: E402

CONF = """\
[global]
loglevel=5
stack=ct1:NFCT,ip2str1:IP2STR,json1:JSON
[ct1]
hash_enable=0
event_mask=5
netlink_socket_buffer_size=67108864
[json1]
file="{d}/flows.json"
"""

GENERATOR = """
import socket, sys
n = int(sys.argv[1])
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"x", ("127.0.0.1", 10000 + i % 50000))
    s.close()
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(flows: int, daemon_cpu: int, gen_cpu: int) -> dict[str, dict[str, float]]:
    with Netns("bench") as ns, tempfile.TemporaryDirectory() as tmp:
        ns.nft("table inet b {\n chain out {\n type filter hook output priority 0;\n"
               " ct state new counter\n }\n}\n")
        ns.sysctls({"net.netfilter.nf_conntrack_udp_timeout": 120})
        dirs = {name: Path(tmp, name) for name in ("ulogd", "ulogpy")}
        procs = {
            "ulogd": UlogdProcess(ns, CONF.format(d=dirs["ulogd"]), dirs["ulogd"]),
            "ulogpy": UlogdProcess(ns, CONF.format(d=dirs["ulogpy"]), dirs["ulogpy"],
                                   binary=ULOGPY),
        }
        for p in procs.values():
            p.start()
            subprocess.run(["taskset", "-pc", str(daemon_cpu), str(p.pid)],
                           check=True, capture_output=True)
        before = {n: cpu_seconds(p.pid) for n, p in procs.items()}
        start = time.monotonic()
        ns.run(["taskset", "-c", str(gen_cpu), sys.executable, "-c", GENERATOR, str(flows)])
        ns.run(["taskset", "-c", str(gen_cpu), "conntrack", "-F"])
        expected = 2 * flows
        drained: dict[str, float] = {}

        def settled() -> bool:
            for n in procs:
                if n not in drained and len(read_lines(dirs[n] / "flows.json")) >= expected:
                    drained[n] = time.monotonic() - start
            return len(drained) == len(procs)

        try:
            wait_until(settled, timeout=120, interval=0.2, what="both daemons to write")
        except TimeoutError:
            time.sleep(2)  # report what was lost
        after = {n: cpu_seconds(p.pid) for n, p in procs.items()}
        rss = {n: _peak_rss_kib(p.pid) for n, p in procs.items()}
        for p in procs.values():
            p.stop()
        losing = {n: "losing events" in (p.log_text() or "").lower() for n, p in procs.items()}
        result = {}
        for n in procs:
            written = len(read_lines(dirs[n] / "flows.json"))
            cpu = after[n] - before[n]
            result[n] = {
                "written": written, "lost": expected - written, "cpu_s": cpu,
                "us_per_event": cpu / max(written, 1) * 1e6, "peak_rss_mib": rss[n] / 1024,
                "drain_s": drained.get(n, float("nan")),
                "said_losing": float(losing[n]),
            }
        return result


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--daemon-cpu", type=int, default=0)
    ap.add_argument("--generator-cpu", type=int, default=1)
    args = ap.parse_args()
    runs = [one_run(args.flows, args.daemon_cpu, args.generator_cpu) for _ in range(args.runs)]
    print(f"{2 * args.flows} conntrack events per run (NEW + DESTROY), {args.runs} runs, "
          "medians:")
    keys = ("written", "lost", "cpu_s", "us_per_event", "peak_rss_mib", "drain_s",
            "said_losing")
    med = {n: {k: statistics.median(r[n][k] for r in runs) for k in keys}
           for n in ("ulogd", "ulogpy")}
    print(f"{'daemon':8} " + " ".join(f"{k:>13}" for k in keys))
    for n, vals in med.items():
        print(f"{n:8} " + " ".join(f"{vals[k]:13.2f}" for k in keys))
    ratio = med["ulogpy"]["us_per_event"] / med["ulogd"]["us_per_event"]
    print(f"CPU per event, ulogpy/ulogd: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
