"""TIME arguments in, RFC 3339 UTC strings out.

Complaints quote times in every shape; scripts pass epoch seconds.  A time
without a zone is local time and the caller is told which zone that was,
because a silent guess is how lookups go wrong by an hour.  Local times that
a DST change makes ambiguous or non-existent are refused rather than guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ulogpy.tools.natlookup.errors import LookupFailed

_EPOCH = re.compile(r"^@?\d{1,12}(\.\d{1,9})?$")
# Offsets written without a colon (+0100, as ulogd's JSON does) get one, for fromisoformat.
_BASIC_OFFSET = re.compile(r"([+-]\d{2})(\d{2})$")
_HAS_ZONE = re.compile(r"(Z|[+-]\d{2}:?\d{2})$", re.IGNORECASE)
HINT = "RFC 3339 such as 2026-11-26T21:42:16Z or 2026-11-26T22:42:16+01:00, or epoch seconds"


@dataclass(frozen=True)
class ParsedTime:
    epoch: float
    #: Set when the text had no zone: which local zone it was read in.
    assumed_zone: str | None = None


def parse_time(text: str) -> ParsedTime:
    """`text` as RFC 3339 (with `Z` or an offset), local time without one, or epoch."""
    raw = text.strip()
    if _EPOCH.match(raw):
        return ParsedTime(float(raw.lstrip("@")))
    if len(raw) < 11 or raw[10] not in "Tt ":
        raise LookupFailed(f"--at {text!r}: not a time; use {HINT}")
    iso = raw[:10] + "T" + raw[11:]
    if iso[-1:] in "zZ":
        iso = iso[:-1] + "+00:00"
    iso = _BASIC_OFFSET.sub(r"\1:\2", iso) if _HAS_ZONE.search(iso) else iso
    try:
        stamp = datetime.fromisoformat(iso)
    except ValueError:
        raise LookupFailed(f"--at {text!r}: not a time; use {HINT}") from None
    if stamp.tzinfo is not None:
        return ParsedTime(stamp.timestamp())
    return _local(stamp, text)


def _local(naive: datetime, text: str) -> ParsedTime:
    first = naive.replace(fold=0).astimezone()
    second = naive.replace(fold=1).astimezone()
    if first.utcoffset() != second.utcoffset():
        # fold=0/1 disagree: the wall time is repeated (DST ends) or skipped (DST starts).
        back = first.astimezone(UTC).astimezone().replace(tzinfo=None)
        what = "does not exist" if back != naive else "happens twice"
        raise LookupFailed(
            f"--at {text!r}: this local time {what} in the local zone (a DST change: "
            f"{_zone_name(first)} / {_zone_name(second)}); give the offset, e.g. "
            f"{naive.isoformat()}{_offset(first)}"
        )
    return ParsedTime(first.timestamp(), _zone_name(first))


def _offset(stamp: datetime) -> str:
    delta = stamp.utcoffset() or timedelta(0)
    sign = "-" if delta < timedelta(0) else "+"
    minutes = abs(int(delta.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _zone_name(stamp: datetime) -> str:
    return f"{stamp.tzname()}, UTC{_offset(stamp)}"


def rfc3339(epoch: float | None) -> str | None:
    """`2026-11-26T21:42:16.508542Z`: UTC, always six fraction digits."""
    if epoch is None:
        return None
    stamp = datetime.fromtimestamp(round(epoch, 6), UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_json_timestamp(text: str) -> float | None:
    """ulogd's JSON `timestamp`: local time, `.usec` optional, `+HHMM` optional.

    ulogd leaves the offset out exactly when it is zero (spec 5.4), so a
    stamp without one is UTC, whatever zone the reader is in.
    """
    iso = _BASIC_OFFSET.sub(r"\1:\2", text) if _HAS_ZONE.search(text) else text
    try:
        stamp = datetime.fromisoformat(iso)
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()
