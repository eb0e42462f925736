"""Every counter a plugin bumps is declared, so that whether it is a loss (logged at
NOTICE by the periodic report, marked by the metrics) is never a guess."""

from __future__ import annotations

import ast
import inspect
import re
import sys
from pathlib import Path

import pytest

from ulogpy.core.plugin import Counters, OutputPlugin
from ulogpy.core.registry import registry

REPO = Path(__file__).resolve().parents[2]
#: `counters.add("x")`, `.tally("x")`: the ways plugin code names a counter.
_USE = re.compile(r'\b(?:counters\.(?:add|tally)|\.tally)\(\s*"([a-z_]+)"')


def _modules_of(cls: type) -> set[Path]:
    """The source files of the plugin's classes, and the helpers beside the plugin."""
    files = set()
    for klass in cls.__mro__:
        module = sys.modules.get(klass.__module__)
        if module is not None and getattr(module, "__file__", None):
            files.add(Path(module.__file__))
    own = Path(inspect.getfile(cls))
    for path in own.parent.glob("*.py"):  # helpers beside it that the plugin imports
        if path != own and path.stem in own.read_text():
            tree = ast.parse(path.read_text())
            if not any(isinstance(n, ast.ClassDef) and any(
                    isinstance(s, ast.Assign) and any(getattr(t, "id", "") == "name"
                                                      for t in s.targets) for s in n.body)
                    for n in tree.body):
                files.add(path)
    return files


@pytest.mark.parametrize("name", sorted(registry()))
def test_every_counter_a_plugin_bumps_is_declared(name: str) -> None:
    cls = registry()[name]
    declared = {c.name for c in cls.declared_counters()}
    used = {m for path in _modules_of(cls) for m in _USE.findall(path.read_text())}
    assert used - declared == set(), f"{name} bumps undeclared counters"


def test_the_delivery_counts_only_declared_counters() -> None:
    declared = {c.name for c in OutputPlugin.declared_counters()}
    for path in (REPO / "ulogpy" / "delivery").glob("*.py"):
        used = set(_USE.findall(path.read_text()))
        assert used - declared == set(), path.name


def test_losses_are_the_declared_ones() -> None:
    nfct = registry()["NFCT"]
    counters = Counters(nfct.declared_counters())
    assert counters.is_loss("overruns") and counters.is_loss("malformed")
    assert counters.is_loss("failed") and counters.is_loss("hash_full")
    assert not counters.is_loss("emitted") and not counters.is_loss("filtered")
    json = Counters(registry()["JSON"].declared_counters())
    assert json.is_loss("dropped") and json.is_loss("write_errors")
    assert not json.is_loss("written") and not json.is_loss("spooled")
