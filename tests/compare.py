"""Comparing what ulogpy wrote with what the real ulogd wrote for the same events.

Values each daemon reads from its own clock (LOGEMU's time stamp, JSON's
`timestamp`, and flow times the kernel did not stamp) are compared within
a stated tolerance; everything else must be equal, byte for byte or value
for value, in the same order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

#: Seconds two clock readings of the same event may differ between the daemons.
CLOCK_TOLERANCE_S = 2.0


@dataclass
class Tally:
    """How many values were compared and how many were equal (for the closing note)."""

    compared: int = 0
    equal: int = 0
    within_tolerance: int = 0
    differences: list[str] = field(default_factory=list)

    def same(self, what: str, ours, theirs) -> None:
        self.compared += 1
        if ours == theirs:
            self.equal += 1
        else:
            self.differences.append(f"{what}: ulogpy={ours!r} ulogd={theirs!r}")

    def close(self, what: str, ours: float, theirs: float, tolerance: float) -> None:
        self.compared += 1
        if abs(ours - theirs) <= tolerance:
            self.within_tolerance += 1
        else:
            self.differences.append(
                f"{what}: ulogpy={ours} ulogd={theirs} differ by more than {tolerance}s"
            )

    def __str__(self) -> str:
        return (f"{self.compared} values compared: {self.equal} equal, "
                f"{self.within_tolerance} clock values within {CLOCK_TOLERANCE_S}s, "
                f"{len(self.differences)} different")


def _syslog_time(stamp: str) -> float:
    now = datetime.now()
    parsed = datetime.strptime(f"{now.year} {stamp}", "%Y %b %d %H:%M:%S")
    return parsed.timestamp()


def compare_logemu(
    ours: list[str], theirs: list[str], tally: Tally, name: str, ordered: bool = True
) -> None:
    """LOGEMU lines: everything after the 15-character time stamp byte-identical.

    `ordered=False` compares the lines as sorted by their text, for records whose
    order is ulogd's hash-bucket order (a polling round).
    """
    if not ordered:
        ours = sorted(ours, key=lambda line: line[15:])
        theirs = sorted(theirs, key=lambda line: line[15:])
    tally.same(f"{name}: number of lines", len(ours), len(theirs))
    for i, (a, b) in enumerate(zip(ours, theirs, strict=False)):
        tally.close(f"{name}[{i}] time", _syslog_time(a[:15]), _syslog_time(b[:15]),
                    CLOCK_TOLERANCE_S)
        tally.same(f"{name}[{i}] text", a[15:], b[15:])


def _json_time(text: str) -> float:
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f",
                "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(text, fmt).timestamp()
        except ValueError:
            continue
    raise ValueError(f"not a ulogd JSON time: {text!r}")


def compare_json(
    ours: list[str], theirs: list[str], tally: Tally, name: str,
    clock_fields: dict[int, set[str]] | None = None,
) -> None:
    """JSON records: same keys in the same order with the same values.

    `timestamp` is a clock reading; `clock_fields` maps a `ct.event` value to
    the `flow.*` pairs (`flow.start`, `flow.end`) each daemon read from its
    own clock for that event type because the kernel did not stamp it.
    """
    clock_fields = clock_fields or {}
    tally.same(f"{name}: number of records", len(ours), len(theirs))
    for i, (a, b) in enumerate(zip(ours, theirs, strict=False)):
        ra, rb = json.loads(a), json.loads(b)
        tally.same(f"{name}[{i}] keys", list(ra), list(rb))
        clocked = clock_fields.get(rb.get("ct.event"), set())
        for key in rb:
            if key not in ra:
                continue
            if key in ("timestamp", "@timestamp"):
                tally.close(f"{name}[{i}] timestamp", _json_time(ra[key]), _json_time(rb[key]),
                            CLOCK_TOLERANCE_S)
            elif key.endswith((".sec", ".usec")) and key.rsplit(".", 1)[0] in clocked:
                if key.endswith(".sec"):
                    base = key.rsplit(".", 1)[0]
                    ta = ra[key] + ra.get(base + ".usec", 0) / 1e6
                    tb = rb[key] + rb.get(base + ".usec", 0) / 1e6
                    tally.close(f"{name}[{i}] {base}", ta, tb, CLOCK_TOLERANCE_S)
            else:
                tally.same(f"{name}[{i}] {key}", ra[key], rb[key])
