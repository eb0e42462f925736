"""Shared pytest configuration.

* Tests marked ``live`` need root, network namespaces, nft and conntrack: they are skipped
  with a clear reason when that is not available (checked once per session).
* Tests marked ``ulogd`` additionally need the real ulogd 2.0.8 (/usr/sbin/ulogd).
* Fixture ``nat_topology``: a fresh lan -- fw -- wan :class:`tests.netns.NatTopology`
  (deleted afterwards); combine with pytest's ``tmp_path`` for configs and output files.
* Fixture ``pg``: one throwaway PostgreSQL cluster for the whole session
  (:class:`tests.pgcluster.PgCluster`); tests create their own databases in it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from tests.netns import NatTopology, Netns, live_skip_reason
from tests.pgcluster import PgCluster, pg_skip_reason
from tests.ulogd_ref import ulogd_skip_reason

_REASONS: dict[str, str | None] = {}


class _RefusePluginsTopLevel:
    """The built-in plugins are `ulogpy.plugins` only: importing the source folder as a
    top-level `plugins` would load every plugin module a second time, with classes that
    are not the registry's."""

    @staticmethod
    def find_spec(name: str, path=None, target=None):
        if name == "plugins" or name.startswith("plugins."):
            raise ImportError(f"import {name!r} as 'ulogpy.{name}'")
        return None


sys.meta_path.insert(0, _RefusePluginsTopLevel())


def _live_reason() -> str | None:
    if "live" not in _REASONS:
        _REASONS["live"] = live_skip_reason()
    return _REASONS["live"]


def _ulogd_reason() -> str | None:
    if "ulogd" not in _REASONS:
        _REASONS["ulogd"] = ulogd_skip_reason()
    return _REASONS["ulogd"]


def pytest_report_header(config: pytest.Config) -> str:
    live = _live_reason()
    ulogd = _ulogd_reason()
    return (
        f"live tests: {'enabled' if live is None else 'SKIPPED - ' + live}; "
        f"reference ulogd: {'available' if ulogd is None else 'SKIPPED - ' + ulogd}"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    live = _live_reason()
    ulogd = _ulogd_reason()
    for item in items:
        if live is not None and "live" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=live))
        elif ulogd is not None and "ulogd" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=ulogd))


@pytest.fixture(scope="session")
def live_ok() -> None:
    """Skip (with the reason) unless live namespace tests can run here."""
    reason = _live_reason()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def nat_topology(live_ok) -> NatTopology:
    """lan -- fw -- wan namespaces with IPv4/IPv6 forwarding and masquerading in fw."""
    with NatTopology() as topo:
        yield topo


@pytest.fixture
def netns(live_ok) -> Netns:
    """One empty namespace (lo up), deleted afterwards."""
    with Netns("test") as ns:
        yield ns


@pytest.fixture(scope="session")
def pg() -> Iterator[PgCluster]:
    """A PostgreSQL server of the tests' own (initdb in a temporary directory)."""
    reason = pg_skip_reason()
    if reason:
        pytest.skip(reason)
    with PgCluster() as cluster:
        yield cluster
