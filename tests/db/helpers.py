"""Helpers of the database tests: key tables from ulogd's dumps, outputs in-process,
and table contents for comparisons."""

from __future__ import annotations

import re
import time
from pathlib import Path

import psycopg

from tests.outputs import Delivered
from ulogpy.config.model import options_model
from ulogpy.core.keys import Key, KeyType
from ulogpy.core.plugin import OutputPlugin

INTROSPECT = Path(__file__).resolve().parents[1] / "fixtures" / "introspect"
SAMPLES = Path("/work/shared/spec/samples")
_LABELS = {t.value: t for t in KeyType}
_KEY_LINE = re.compile(r"^\tKey: (\S+) \((.+?)(?:, optional)?\)$")


def plugin_keys(name: str) -> list[Key]:
    """Output keys of a ulogd plugin, from its `ulogd -i` dump."""
    out = []
    text = (INTROSPECT / f"{name}.txt").read_text()
    for line in text.split("Output keys:")[1].splitlines():
        m = _KEY_LINE.match(line)
        if m:
            out.append(Key(m.group(1), _LABELS.get(m.group(2), KeyType.NONE)))
    return out


def stack_keys(*plugins: str) -> list[Key]:
    """The keys a wildcard output sees after `plugins` (first position, nearest type)."""
    order: list[str] = []
    nearest: dict[str, Key] = {}
    for name in plugins:
        for key in plugin_keys(name):
            if key.name not in nearest:
                order.append(key.name)
            nearest[key.name] = key
    return [nearest[n] for n in order]


class OutputHarness:
    """Real output plugin instances, started without a daemon; stopped at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.started: list[Delivered] = []

    def make(self, cls: type, options: dict, keys: list[Key], instance: str = "out1",
             start: bool = True) -> Delivered | OutputPlugin:
        opts = {"spool_dir": str(self.tmp / "spool"), "flush_timeout": 1, **options}
        config = options_model(cls).model_validate(opts)
        inst = cls(instance, config)
        inst.stack_keys = keys
        inst.configure()
        if not start:
            return inst
        out = Delivered(inst)
        out.start()
        self.started.append(out)
        return out

    def stop(self, out: Delivered) -> None:
        out.stop()
        if out in self.started:
            self.started.remove(out)

    def close(self) -> None:
        for out in self.started:
            out.stop()
        self.started.clear()


def wait_for(pred, timeout: float = 10.0, what: str = "condition", interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def query(conninfo: str, sql: str, params=None) -> list[tuple]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def count(conninfo: str, table: str) -> int:
    return query(conninfo, f"SELECT count(*) FROM {table}")[0][0]


def table_rows(conninfo: str, table: str, drop: tuple[str, ...] = ()) -> list[tuple]:
    """Every row as a tuple of text values (NULL as None), sorted, without `drop` columns."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        cols = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
            "AND table_schema = 'public' ORDER BY ordinal_position", (table,))]
        keep = [c for c in cols if c not in drop]
        select = ", ".join(f'"{c}"::text' for c in keep)
        rows = conn.execute(f"SELECT {select} FROM {table}").fetchall()
    return sorted(rows, key=lambda r: tuple("" if v is None else v for v in r))
