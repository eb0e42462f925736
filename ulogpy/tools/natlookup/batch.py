"""`nat-lookup --batch FILE` (or `-`): many complaints, one process, open connections.

An abuse desk answers complaints by the hundred; a process per lookup pays its
start-up and imports each time.  Each input line is one complaint, either CSV
(`ip,port,time[,proto[,remote]]`, an optional header line naming those fields) or a
JSON object with the same keys (`time` may also be `at`); blank lines and `#`
comments are skipped.  Each complaint gives one JSON line on stdout, in input order:
the complaint (`line`, `ip`, `port`, `at`) and either `matches` (the array `--json`
prints, best first) or `error`.  Sources stay open across the batch (ClickHouse,
PostgreSQL keep their connection).  Complaints are answered in chunks of CHUNK: a
source with `lookup_many` (ClickHouse: a few statements per shard for the whole chunk,
the shards asked at once) answers the chunk at once, the others complaint by
complaint.  When every source can be forked, a few chunks are in flight at once,
each on its own connections; the output keeps the input order.

Exit status: 0 when some complaint matched, 1 when none did, 2 when a line could not
be read (its `error` says why) or a source failed.
"""

from __future__ import annotations

import csv
import queue
import sys
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from types import SimpleNamespace
from typing import TextIO

import orjson

from ulogpy.tools.natlookup.errors import LookupFailed
from ulogpy.tools.natlookup.flows import Flow, Query, rank
from ulogpy.tools.natlookup.output import as_dict
from ulogpy.tools.natlookup.timeparse import rfc3339

FIELDS = ("ip", "port", "time", "proto", "remote")


def complaints(lines: Iterable[str]) -> Iterator[tuple[int, dict | None, str | None]]:
    """(line number, fields or None, error or None) for each complaint line."""
    for number, raw in enumerate(lines, 1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("{"):
            try:
                obj = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                yield number, None, f"not JSON: {exc}"
                continue
            if not isinstance(obj, dict):
                yield number, None, "a JSON line must be an object"
                continue
            if "time" not in obj and "at" in obj:
                obj["time"] = obj["at"]
            yield number, {k: obj.get(k) for k in FIELDS}, None
            continue
        cells = next(csv.reader([text]))
        if [c.strip().lower() for c in cells[:3]] == list(FIELDS[:3]):
            continue  # a header line
        if len(cells) < 3 or len(cells) > len(FIELDS):
            yield number, None, "CSV needs ip,port,time[,proto[,remote]]"
            continue
        yield number, dict(zip(FIELDS, (c.strip() or None for c in cells), strict=False)), None


def _args(fields: dict, window: float) -> SimpleNamespace:
    port = fields.get("port")
    if port is not None and not str(port).isdigit():
        raise LookupFailed(f"port {port!r} is not a port number (0-65535)")
    if port is not None and int(port) > 65535:
        raise LookupFailed(f"port {port!r} is not a port number (0-65535)")
    if not fields.get("ip") or fields.get("time") in (None, ""):
        raise LookupFailed("ip and time are required")
    return SimpleNamespace(ip=str(fields["ip"]), port=int(port) if port is not None else None,
                           at=str(fields["time"]), proto=fields.get("proto"), window=window,
                           remote=fields.get("remote"))


#: Lookups in flight at once when every source can be forked (a network round trip
#: each: ClickHouse); results are still written in input order.
WORKERS = 4
#: Complaints per chunk: a few statements per shard for all of them (ClickHouse).  Large,
#: so that a chunk holds several complaints of each day to share a statement.
CHUNK = 500


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def run_batch(stream: TextIO, sources: list, window: float, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    matched = failed = False
    pools = [sources]
    if all(hasattr(s, "fork") for s in sources):
        pools += [[s.fork() for s in sources] for _ in range(WORKERS - 1)]
    free: queue.SimpleQueue = queue.SimpleQueue()
    for pool in pools:
        free.put(pool)

    def answer(chunk: list[tuple[int, dict | None, str | None]]) -> list[dict]:
        pool = free.get()
        try:
            return _answer_chunk(chunk, pool, window)
        finally:
            free.put(pool)

    try:
        with ThreadPoolExecutor(max_workers=len(pools)) as ex:
            # map() reads the whole input first: a batch file, or stdin up to its end.
            for heads in ex.map(answer, _chunks(complaints(stream), CHUNK)):
                for head in heads:
                    failed |= "error" in head
                    matched |= bool(head.get("matches"))
                    out.write(orjson.dumps(head).decode() + "\n")
    finally:
        for pool in pools:
            for source in pool:
                close = getattr(source, "close", None)
                if close is not None:
                    close()
    return 2 if failed else (0 if matched else 1)


def _answer_chunk(chunk: list[tuple[int, dict | None, str | None]], sources: list,
                  window: float) -> list[dict]:
    """The heads of a chunk of complaints, in order: each complaint parsed on its own
    (a bad line is its own error), then the valid ones looked up together."""
    from ulogpy.tools.natlookup.cli import make_query

    heads: list[dict] = []
    pending: list[tuple[dict, Query]] = []
    for number, fields, error in chunk:
        head: dict = {"line": number}
        heads.append(head)
        if fields is not None:
            head |= {"ip": fields.get("ip"), "port": fields.get("port")}
        try:
            if error is not None:
                raise LookupFailed(error)
            query, _notes = make_query(_args(fields, window))
        except LookupFailed as exc:
            head["error"] = str(exc)
            continue
        head |= {"ip": query.ip, "port": query.port, "at": rfc3339(query.at)}
        pending.append((head, query))
    queries = [q for _, q in pending]
    for (head, query), matches in zip(pending, _lookup_chunk(sources, queries), strict=True):
        if isinstance(matches, LookupFailed):
            head["error"] = str(matches)
        else:
            head["matches"] = [as_dict(f, query) for f in matches]
    return heads


def _lookup_chunk(sources: list, queries: Sequence[Query]) -> list[list[Flow] | LookupFailed]:
    """Each query's ranked flows over every source (or the error of its lookup)."""
    found: list[list[Flow] | LookupFailed] = [[] for _ in queries]
    for source in sources:
        if hasattr(source, "lookup_many") and queries:
            for i, flows in enumerate(source.lookup_many(queries)):
                if not isinstance(found[i], LookupFailed):
                    found[i].extend(flows)
            continue
        for i, query in enumerate(queries):
            if isinstance(found[i], LookupFailed):
                continue
            try:
                found[i].extend(source.lookup(query))
            except LookupFailed as exc:
                if _source_failure(exc, sources):
                    raise
                found[i] = exc
    return [f if isinstance(f, LookupFailed) else rank(f, q)
            for f, q in zip(found, queries, strict=True)]


def lookup_all(sources: list, query: Query) -> list[Flow]:
    flows: list[Flow] = []
    for source in sources:
        flows.extend(source.lookup(query))
    return rank(flows, query)


def _source_failure(exc: LookupFailed, sources: list) -> bool:
    """An error naming a source (unreachable, no table): the batch cannot go on."""
    text = str(exc)
    return any(text.startswith(f"{getattr(s, 'label', '')}:") for s in sources)
