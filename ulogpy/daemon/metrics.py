"""Prometheus metrics: every instance's counters on an HTTP /metrics endpoint.

`[global] metrics_listen = "127.0.0.1:9077"` (or `--metrics-listen`) turns it on.
The port is outside 9100-9999, the range the Prometheus wiki's "default port
allocations" has handed out to exporters, and outside Prometheus's own 9090-9094.

Why a collector and not prometheus_client's Counter objects: the counters already
exist (`Counters` on every instance, bumped with a plain attribute store on the
per-event path), so the collector reads them when Prometheus scrapes and the
readers pay nothing per event.  The HTTP server runs in threads of its own; a
scrape takes no lock the readers take, it copies each instance's counters
(`Counters.snapshot`, a dict copy) and reads a few integers of each buffer.

Which counter becomes which metric is one table (`FAMILIES`), chosen by the
counter's name, the instance's kind and whether the counter table says it is a
loss.  Every declared counter is also exported as it is named, in
`ulogpy_plugin_counter_total{counter=...}`, so nothing a plugin counts is left
out.  Labels are `instance` (the id in the stack line) and `plugin` (its name),
plus `reason` or `counter` (names from the counter tables): no label takes a
value from the events, so cardinality is bounded by the configuration.  A filter or
output named in several stacks is one instance per stack, as in ulogd: their counters
are summed into one series.

Prometheus sets `instance` to the target's address itself; scrape ulogpy with
`honor_labels: true` to keep the plugin instance in `instance` (otherwise it appears
as `exported_instance`)::

    scrape_configs:
      - job_name: ulogpy
        honor_labels: true
        static_configs:
          - targets: ["127.0.0.1:9077"]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import start_http_server

from ulogpy import __version__
from ulogpy.config.model import parse_listen
from ulogpy.core.plugin import Counter, Kind, Plugin

log = logging.getLogger("ulogpy.metrics")
LABELS = ("instance", "plugin")
#: Loss counters of outputs that count attempts, not records (the records are retried).
NOT_RECORDS = frozenset({"write_errors"})


@dataclass(frozen=True, slots=True)
class Family:
    """One metric fed by some counters: which ones (`takes`), and the extra label."""

    name: str
    help: str
    takes: Callable[[Kind, Counter], bool]
    label: str | None = None


FAMILIES = (
    Family("ulogpy_events", "events an input emitted to its stacks",
           lambda kind, c: kind is Kind.INPUT and c.name == "emitted"),
    Family("ulogpy_events_lost", "events an input lost (overrun, sequence gap, "
           "malformed message, ...), by counter", lambda kind, c: kind is Kind.INPUT and c.loss,
           label="reason"),
    Family("ulogpy_records_written", "records that reached the output's destination",
           lambda kind, c: kind is Kind.OUTPUT and c.name == "written"),
    Family("ulogpy_records_dropped", "records a filter or output lost (full queue, "
           "refused, failed, ...), by counter",
           lambda kind, c: kind is not Kind.INPUT and c.loss and c.name not in NOT_RECORDS,
           label="reason"),
    Family("ulogpy_plugin_counter", "every counter an instance declares, as it is named",
           lambda kind, c: True, label="counter"),
)


class PipelineCollector:
    """Reads the pipeline's counters and gauges at scrape time."""

    def __init__(self, instances: Iterable[Plugin], writers: dict[Any, Any]) -> None:
        self.instances = tuple(instances)
        self.writers = dict(writers)

    def describe(self) -> list[Metric]:
        return []  # not known before a scrape: no check at registration

    def collect(self) -> Iterator[Metric]:
        # A filter or output named in several stacks is one instance per stack (as in
        # ulogd); their counters are summed, so each label set is one series.
        sums: dict[tuple[str, tuple[str, ...]], float] = {}
        for inst in self.instances:
            values = _snapshot(inst)
            labels = (inst.id, inst.name)
            for counter in inst.counters.declared.values():
                value = values.get(counter.name, 0)
                for family in FAMILIES:
                    if family.takes(inst.kind, counter):
                        key = (family.name, labels + ((counter.name,) if family.label else ()))
                        sums[key] = sums.get(key, 0) + value
        families = {f.name: CounterMetricFamily(
            f.name, f.help, labels=LABELS + ((f.label,) if f.label else ())) for f in FAMILIES}
        for (name, labels), value in sums.items():
            families[name].add_metric(labels, value)
        yield from families.values()
        yield from self._gauges()

    def _gauges(self) -> Iterator[Metric]:
        queue: dict[tuple[str, str], int] = {}
        spool: dict[tuple[str, str], int] = {}
        for out, writer in self.writers.items():
            labels = (out.id, out.name)
            buffer = writer.buffer
            queue[labels] = queue.get(labels, 0) + _retry(buffer.depth)
            if buffer.spool is not None:
                spool[labels] = spool.get(labels, 0) + _retry(buffer.spool.total_bytes)
        rcvbuf: dict[tuple[str, str], int] = {}
        for inst in self.instances:
            size = getattr(inst, "rcvbuf", None)
            if inst.kind is Kind.INPUT and isinstance(size, int) and size:
                rcvbuf[(inst.id, inst.name)] = size
        for name, help_text, values in (
            ("ulogpy_queue_records", "records waiting for the output's destination "
             "(memory and spool)", queue),
            ("ulogpy_spool_bytes", "bytes in the output's on-disk spool", spool),
            ("ulogpy_netlink_rcvbuf_bytes", "the netlink socket's receive buffer, as the "
             "kernel reports it", rcvbuf),
        ):
            gauge = GaugeMetricFamily(name, help_text, labels=LABELS)
            for labels, value in values.items():
                gauge.add_metric(labels, value)
            yield gauge
        info = GaugeMetricFamily("ulogpy_build_info", "ulogpy's version (always 1)",
                                 labels=("version",))
        info.add_metric([__version__], 1)
        yield info


def _retry(read: Callable[[], int], attempts: int = 3) -> int:
    """A read of structures another thread changes (a dict resized mid-iteration raises
    RuntimeError): tried again, never locked."""
    for _ in range(attempts - 1):
        try:
            return read()
        except RuntimeError:
            continue
    return read()


def _snapshot(inst: Plugin) -> dict[str, int]:
    return _retry(inst.counters.snapshot)  # type: ignore[arg-type]


def registry_for(instances: Iterable[Plugin], writers: dict[Any, Any]) -> CollectorRegistry:
    """A registry of its own (not the client's global one): the pipeline's metrics and
    the client's process, platform and garbage-collector collectors."""
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(PipelineCollector(instances, writers))
    return registry


class MetricsServer:
    """The /metrics endpoint (every path answers with the metrics, as the client does)."""

    def __init__(self, listen: tuple[str, int], registry: CollectorRegistry) -> None:
        host, port = listen
        self.server, self.thread = start_http_server(port, addr=host, registry=registry)
        self.address = f"{host}:{self.server.server_port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start(listen: str, pipeline: Any, runner: Any) -> MetricsServer | None:
    """The metrics server for `listen` ("" = none); OSError when it cannot bind."""
    address = parse_listen(listen)
    if address is None:
        return None
    registry = registry_for(pipeline.instances(), runner.writers)
    try:
        server = MetricsServer(address, registry)
    except OSError as exc:
        raise OSError(exc.errno, f"metrics_listen {listen}: {exc.strerror}") from None
    log.info("metrics at http://%s/metrics", server.address)
    return server
