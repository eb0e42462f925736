"""What the throwaway database servers of the tests share (`pgcluster`, `mariadb`).

Each runs as its system user from a temporary directory of its own (data
directory, socket, log), is reached only through a unix socket there, and is
stopped and deleted by `close` (also on leaving a `with` block).  The system
server is neither needed nor touched.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import tempfile
from pathlib import Path
from typing import Self


def server_skip_reason(server: str, user: str, package: str,
                       missing: str | None) -> str | None:
    """Why the `server` fixture cannot run here (None: it can): it needs root, the
    package's binaries (`missing` says which is not there) and its system user."""
    if os.geteuid() != 0:
        return f"the {server} fixture runs the server as user {user}: needs root"
    if missing:
        return missing
    try:
        pwd.getpwnam(user)
    except KeyError:
        return f"no '{user}' system user (Debian package {package})"
    return None


class TempServer:
    """A server's private directory (`base`), data directory and log, and its lifecycle."""

    def __init__(self, user: str, prefix: str) -> None:
        self.user = pwd.getpwnam(user)
        self.base = Path(tempfile.mkdtemp(prefix=prefix))
        os.chmod(self.base, 0o755)  # the server (its own user) must reach its files
        self.datadir = self.base / "data"
        self.datadir.mkdir(mode=0o700)
        os.chown(self.datadir, self.user.pw_uid, self.user.pw_gid)
        self.logfile = self.base / "server.log"

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def _stop_at_close(self) -> None:
        """How `close` stops the server (sessions cut, no wait for a clean state)."""
        self.stop()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stop_at_close()
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.logfile.read_text(errors="replace")[-3000:]
        return ""
