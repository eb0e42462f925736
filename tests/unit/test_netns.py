"""`run_in`: the call runs in a helper thread inside the namespace, its result and its
exceptions come back, the caller's thread never moves, and a bad path is named."""

from __future__ import annotations

import os
import threading

import pytest

from ulogpy.transports import netns

OWN = "/proc/self/ns/net"


def test_result_and_thread(tmp_path) -> None:
    if os.geteuid() != 0:
        pytest.skip("setns needs CAP_SYS_ADMIN")
    before = os.stat(OWN).st_ino
    names = netns.run_in(OWN, lambda: (threading.current_thread().name,
                                       os.stat("/proc/thread-self/ns/net").st_ino))
    assert names == ("ulogpy-netns", before)
    assert threading.current_thread().name != "ulogpy-netns"


def test_exceptions_come_back() -> None:
    if os.geteuid() != 0:
        pytest.skip("setns needs CAP_SYS_ADMIN")

    def boom() -> None:
        raise KeyError("inside")

    with pytest.raises(KeyError, match="inside"):
        netns.run_in(OWN, boom)


def test_bad_paths_are_named(tmp_path) -> None:
    missing, plain = tmp_path / "missing", tmp_path / "plain"
    plain.write_text("")
    with pytest.raises(OSError, match=f"network namespace '{missing}': No such file"):
        netns.run_in(str(missing), lambda: None)
    if os.geteuid() == 0:
        with pytest.raises(OSError, match="not a network namespace"):
            netns.run_in(str(plain), lambda: None)


@pytest.mark.parametrize(("value", "ok"), [("", True), ("/run/netns/a", True),
                                           ("run/netns/a", False)])
def test_check_path(value: str, ok: bool) -> None:
    assert (netns.check_path(value) is None) is ok
