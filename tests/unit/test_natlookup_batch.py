"""`nat-lookup --batch`: 1,000 complaints (CSV and JSON lines, hits and misses, one bad
line) answered in one process give, line for line, the matches of 1,000 single
`--json` lookups against the same SQLite history."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from tests.unit.test_natlookup import PUB, T0, nfct_line
from tests.unit.test_natlookup_sources import make_db, store
from ulogpy.tools.natlookup.cli import main

FLOWS = 300


def history() -> list[str]:
    """FLOWS closed TCP flows over 5 public ports (each port reused several times)."""
    lines = []
    for n in range(FLOWS):
        port, start = 40000 + n % 5, T0 + n * 7.0
        inside = (f"10.77.{1 + n % 3}.{2 + n % 200}", 30000 + n)
        lines.append(nfct_line(1, ct_id=n + 1, inside=inside, public=(PUB, port), start=start))
        lines.append(nfct_line(4, ct_id=n + 1, inside=inside, public=(PUB, port), start=start,
                               end=start + 5.5))
    return lines


def complaints(n: int) -> list[str]:
    rng = random.Random(15)
    out = ["ip,port,time,proto,remote"]
    for i in range(n):
        port, at = 40000 + rng.randrange(6), T0 + rng.uniform(-50, FLOWS * 7.0 + 50)
        if i % 2:
            out.append(f"{PUB},{port},{at:.6f},tcp")
        else:
            out.append(json.dumps({"ip": PUB, "port": port, "time": f"{at:.6f}"}))
    return out


def test_batch_equals_single_lookups(tmp_path: Path, capsys) -> None:
    db = make_db(tmp_path / "h.db")
    store(db, history())
    src = f"sqlite://{tmp_path}/h.db"
    lines = complaints(1000)
    lines.insert(500, "not,a,complaint,line,at,all")
    (tmp_path / "c.txt").write_text("\n".join(lines) + "\n")

    began = time.monotonic()
    code = main(["--batch", str(tmp_path / "c.txt"), "--source", src])
    elapsed = time.monotonic() - began
    out, err = capsys.readouterr()
    results = [json.loads(x) for x in out.splitlines()]
    assert code == 2  # the bad line
    assert len(results) == 1001
    assert [r["line"] for r in results] == list(range(2, 1003))  # in order, header skipped
    bad = results.pop(499)  # file line 501
    assert "error" in bad and "CSV needs" in bad["error"]

    hits = 0
    for text, result in zip([x for x in lines[1:] if not x.startswith("not,")], results,
                            strict=True):
        if text.startswith("{"):
            c = json.loads(text)
            argv = ["--ip", c["ip"], "--port", str(c["port"]), "--at", c["time"]]
        else:
            ip, port, at, proto = text.split(",")
            argv = ["--ip", ip, "--port", port, "--at", at, "--proto", proto]
        single_code = main([*argv, "--source", src, "--json"])
        single = json.loads(capsys.readouterr().out)
        assert result["matches"] == single, (text, result)
        assert single_code == (0 if single else 1)
        hits += bool(single)
    assert 300 < hits < 1000  # both kinds of answer are exercised
    with capsys.disabled():
        print(f"\nbatch: {1000 / elapsed:.0f} lookups/s over SQLite")


def test_batch_from_stdin_and_errors(tmp_path: Path, capsys, monkeypatch) -> None:
    import io

    db = make_db(tmp_path / "h.db")
    store(db, history()[:2])
    src = f"sqlite://{tmp_path}/h.db"
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{PUB},40000,{T0 + 1}\n"))
    assert main(["--batch", "-", "--source", src]) == 0
    (result,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert result["matches"][0]["inside_ip"] == "10.77.1.2"
    assert main(["--batch", str(tmp_path / "none.txt"), "--source", src]) == 2
    assert "none.txt" in capsys.readouterr().err
    assert main(["--batch", "-", "--ip", PUB, "--source", src]) == 2
    assert main(["--port", "1", "--source", src]) == 2
    assert "--ip and --at are required" in capsys.readouterr().err
