"""Running one call inside another network namespace (`network_namespace_path`).

A socket belongs to the namespace it was created in for its whole life, so an
input that opens its netlink sockets inside a container's namespace reads that
container's conntrack table and NFLOG groups from the daemon's own event loop.
The switch happens in a short-lived helper thread: `setns(CLONE_NEWNET)` changes
only the calling thread's namespace, so the main thread (and every other input,
output and the metrics server) never leaves the daemon's namespace, not even
briefly, and nothing has to switch back (the thread just ends).  Sysctls under
/proc/sys/net are per namespace in the same way: written from the helper thread,
they reach the target namespace.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import threading
from collections.abc import Callable
from typing import TypeVar

CLONE_NEWNET = 0x40000000
T = TypeVar("T")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
_libc.setns.restype = ctypes.c_int


def check_path(value: str) -> str | None:
    """The option check: empty (the daemon's namespace) or an absolute path."""
    if not value or value.startswith("/"):
        return None
    return "must be empty or an absolute path (e.g. /run/netns/NAME or /proc/PID/ns/net)"


def setns(fd: int) -> None:
    """Move the calling thread into the network namespace open at `fd`."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def enter(path: str) -> None:
    """Move the calling thread into the network namespace at `path`; the OSError
    names the path (EINVAL: the file is no network namespace)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        why = "not a network namespace" if exc.errno == errno.EINVAL else exc.strerror
        raise OSError(exc.errno, f"network namespace '{path}': {why}") from None


def run_in(path: str, call: Callable[[], T]) -> T:
    """`call()` run in a helper thread inside the network namespace at `path`; its
    result, or its exception re-raised here (OSError when `path` is no namespace)."""
    outcome: list = []

    def body() -> None:
        try:
            enter(path)
            outcome.append((True, call()))
        except BaseException as exc:  # handed to the caller's thread
            outcome.append((False, exc))

    helper = threading.Thread(target=body, name="ulogpy-netns", daemon=True)
    helper.start()
    helper.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value
