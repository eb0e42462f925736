"""Run the real ulogd 2.0.8 (``/usr/sbin/ulogd``) inside a namespace, as a reference.

    with UlogdProcess(topo.fw, conf_text, tmp_path) as ul:
        ...generate traffic...
        lines = wait_for_lines(tmp_path / "flows.log", 6)

The config text is written to ``<tmpdir>/ulogd.conf``.  When its ``[global]`` section has
no ``logfile=``, ``logfile="<tmpdir>/ulogd.log"`` is added so ulogd's own log is at hand
(:attr:`UlogdProcess.logfile`).  ulogd loads every plugin in
``/usr/lib/x86_64-linux-gnu/ulogd`` by itself when the config has no ``plugin=`` lines.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tests.netns import Netns, wait_until

__all__ = [
    "ULOGD_BIN",
    "ULOGPY",
    "ULOGD_PLUGIN_DIR",
    "UlogdError",
    "UlogdProcess",
    "read_lines",
    "ulogd_skip_reason",
    "wait_for_lines",
    "wait_for_text",
]

ULOGD_BIN = Path("/usr/sbin/ulogd")
#: ulogpy as installed in the venv running the tests (so `UlogdProcess(binary=ULOGPY)`).
ULOGPY = str(Path(sys.executable).with_name("ulogpy"))
ULOGD_PLUGIN_DIR = Path("/usr/lib/x86_64-linux-gnu/ulogd")


class UlogdError(RuntimeError):
    pass


def ulogd_skip_reason() -> str | None:
    """None when the reference ulogd can be run here, else why not."""
    if not ULOGD_BIN.exists():
        return f"{ULOGD_BIN} not installed (run scripts/setup: Debian package ulogd2)"
    if not ULOGD_PLUGIN_DIR.is_dir():
        return f"{ULOGD_PLUGIN_DIR} missing (Debian package ulogd2)"
    return None


# ------------------------------------------------------------------------- file polling


def read_lines(path: str | os.PathLike) -> list[str]:
    """Complete lines (newline-terminated) of ``path``, without the newline; [] if absent."""
    try:
        data = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return []
    lines = data.split("\n")
    return lines[:-1]  # the last element is "" or an incomplete line


def wait_for_lines(
    path: str | os.PathLike,
    n: int,
    timeout: float = 10.0,
    match: Callable[[str], bool] | str | None = None,
    interval: float = 0.05,
) -> list[str]:
    """Poll until ``path`` has at least ``n`` complete lines (only those for which
    ``match`` — a predicate or a regex searched in the line — holds); return those lines.
    Raises TimeoutError showing the file's content."""
    pred: Callable[[str], bool] | None
    if isinstance(match, str):
        rx = re.compile(match)

        def pred(line: str) -> bool:
            return rx.search(line) is not None
    else:
        pred = match

    def got() -> list[str] | None:
        lines = read_lines(path)
        if pred is not None:
            lines = [ln for ln in lines if pred(ln)]
        return lines if len(lines) >= n else None

    try:
        return wait_until(got, timeout, interval, what=f"{n} lines in {path}")  # type: ignore[return-value]
    except TimeoutError:
        lines = read_lines(path)
        raise TimeoutError(
            f"{path}: wanted {n} matching lines within {timeout}s, file has {len(lines)}:\n"
            + "\n".join(lines)
        ) from None


def wait_for_text(path: str | os.PathLike, text: str, timeout: float = 10.0) -> str:
    """Poll until ``text`` occurs in ``path``; returns the file content."""

    def got() -> str | None:
        try:
            data = Path(path).read_text(errors="replace")
        except FileNotFoundError:
            return None
        return data if text in data else None

    return wait_until(got, timeout, what=f"{text!r} in {path}")  # type: ignore[return-value]


# ------------------------------------------------------------------------- the process


_GLOBAL_RX = re.compile(r"^\s*\[global\]\s*$", re.M)
_SECTION_RX = re.compile(r"^\s*\[[^\]]+\]\s*$", re.M)
_LOGFILE_RX = re.compile(r'^\s*logfile\s*=\s*"?([^"\n]*)"?\s*$', re.M)


def _with_logfile(conf: str, logfile: Path) -> tuple[str, Path | None]:
    """Add ``logfile=`` to [global] unless present; return (conf, own log path or None)."""
    g = _GLOBAL_RX.search(conf)
    if g is None:
        conf = f'[global]\nlogfile="{logfile}"\n' + conf
        return conf, logfile
    nxt = _SECTION_RX.search(conf, g.end())
    body = conf[g.end() : nxt.start() if nxt else len(conf)]
    m = _LOGFILE_RX.search(body)
    if m:
        val = m.group(1).strip()
        return conf, (None if val in ("syslog", "stdout", "") else Path(val))
    conf = conf[: g.end()] + f'\nlogfile="{logfile}"' + conf[g.end() :]
    return conf, logfile


class UlogdProcess:
    """The real ulogd in the foreground inside ``ns``; context manager (start/stop).

    * ``conf_path``: ``<tmpdir>/ulogd.conf``; ``logfile``: ulogd's own log (None when the
      config sends it to syslog/stdout); ``output_path``: its stdout+stderr.
    * ``start()`` returns once ulogd has entered its main loop (stacks started, netlink
      subscriptions in place): detected by its switch to SCHED_RR, which 2.0.8 does right
      before the loop, or the "entering main loop" log line; raises UlogdError if it exits.
    * ``stop()`` sends SIGTERM and waits; returns the exit code.
    """

    def __init__(
        self,
        ns: Netns,
        conf_text: str,
        tmpdir: str | os.PathLike,
        *,
        binary: str | os.PathLike = ULOGD_BIN,
        args: Sequence[str] = (),
        add_logfile: bool = True,
    ):
        self.ns = ns
        self.tmpdir = Path(tmpdir)
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        self.binary = str(binary)
        self.args = list(args)
        self.conf_path = self.tmpdir / "ulogd.conf"
        self.output_path = self.tmpdir / "ulogd.out"
        if add_logfile:
            conf_text, self.logfile = _with_logfile(conf_text, self.tmpdir / "ulogd.log")
        else:
            m = _LOGFILE_RX.search(conf_text)
            self.logfile = (
                Path(m.group(1)) if m and m.group(1) not in ("syslog", "stdout") else None
            )
        self.conf_text = conf_text
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self, wait: bool = True, timeout: float = 10.0) -> UlogdProcess:
        if self.proc is not None:
            raise UlogdError("already started")
        self.conf_path.write_text(self.conf_text)
        out = open(self.output_path, "wb")  # the child keeps its own copy
        try:
            # `ip netns exec` execs the command, so proc.pid is ulogd's pid.
            self.proc = self.ns.popen(
                [self.binary, "-c", str(self.conf_path), *self.args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        finally:
            out.close()
        if wait:
            self.wait_ready(timeout)
        return self

    def _in_main_loop(self) -> bool:
        assert self.proc is not None
        try:
            if os.sched_getscheduler(self.proc.pid) == os.SCHED_RR:
                return True
        except OSError:
            pass
        return bool(self.logfile and "entering main loop" in self.log_text())

    def wait_ready(self, timeout: float = 10.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                raise UlogdError(
                    f"ulogd exited with {self.proc.returncode} during start-up\n"
                    f"--- output:\n{self.output_text()}\n--- log:\n{self.log_text()}"
                )
            if self._in_main_loop():
                return
            time.sleep(0.02)
        # Still alive but not detectably in its loop (e.g. sched_setscheduler refused):
        # carry on, it has had `timeout` seconds.

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` (SIGKILL after that); the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.returncode = self.proc.returncode
        with contextlib.suppress(ValueError):
            self.ns.procs.remove(self.proc)
        return self.returncode

    def __enter__(self) -> UlogdProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ inspection
    def log_text(self) -> str:
        if self.logfile is None:
            return ""
        try:
            return self.logfile.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def output_text(self) -> str:
        try:
            return self.output_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
