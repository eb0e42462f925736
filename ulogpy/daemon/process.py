"""Process-level duties: pidfile, daemonising, privileges.

The pidfile follows ulogd: created exclusively, write-locked with fcntl for
as long as the daemon runs, a stale one (not locked by anyone) replaced,
removed at exit.  The lock is an open-file-description lock: it conflicts
with ulogd's POSIX locks but, unlike them, is shared with the forked child,
so the parent can wait for the child's verdict without the two deadlocking
on the lock and without a moment where the pidfile is unlocked.

Unlike ulogd, daemonising happens after the configuration is validated, and
the parent waits until the child has started every stack, so `ulogpy -d`
exits 1 with the error when start-up fails.
"""

from __future__ import annotations

import errno
import fcntl
import grp
import os
import pwd
import struct
import sys


class DaemonError(Exception):
    pass


def _ofd_lock(fd: int, wait: bool) -> None:
    """Write-lock the whole file, owned by the open file description (shared over fork)."""
    flock = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
    fcntl.fcntl(fd, fcntl.F_OFD_SETLKW if wait else fcntl.F_OFD_SETLK, flock)


class PidFile:
    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.fd: int | None = None

    def acquire(self) -> None:
        """Create and lock the pidfile, or fail naming the running daemon."""
        for _attempt in range(2):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            except FileExistsError:
                self._handle_existing()
                continue
            except OSError as exc:
                raise DaemonError(f"cannot create pidfile {self.path}: {exc.strerror}") from None
            try:
                _ofd_lock(fd, wait=False)
            except OSError as exc:
                os.close(fd)
                raise DaemonError(f"cannot lock pidfile {self.path}: {exc.strerror}") from None
            self.fd = fd
            self.write()
            return
        raise DaemonError(f"cannot create pidfile {self.path}")

    def _handle_existing(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            try:
                pid = int(os.read(fd, 64).decode().strip() or "0")
            except ValueError:
                pid = 0
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    raise DaemonError(
                        f"another ulogpy is already running with pid {pid} "
                        f"(pidfile {self.path} is locked)"
                    ) from None
                raise
        finally:
            os.close(fd)
        sys.stderr.write(f"ulogpy: removing stale pidfile {self.path} for pid {pid}\n")
        os.unlink(self.path)

    def write(self) -> None:
        """Write our pid (again after fork; the lock came along with the descriptor)."""
        assert self.fd is not None
        _ofd_lock(self.fd, wait=True)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None


def lookup_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise DaemonError(f"Unknown user {name}.") from None


def drop_privileges(user: pwd.struct_passwd) -> None:
    """setgid, initgroups, setuid: after sockets are open and files created."""
    try:
        os.setgid(user.pw_gid)
        os.initgroups(user.pw_name, user.pw_gid)
        os.setuid(user.pw_uid)
    except OSError as exc:
        raise DaemonError(f"cannot change to user {user.pw_name}: {exc.strerror}") from None


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


class Daemonizer:
    """Fork into the background; the parent exits with the child's start-up verdict."""

    def __init__(self) -> None:
        self._w: int | None = None

    def detach(self) -> None:
        r, w = os.pipe()
        pid = os.fork()
        if pid > 0:
            os.close(w)
            verdict = b""
            while chunk := os.read(r, 4096):
                verdict += chunk
            if verdict.startswith(b"ok"):
                os._exit(0)
            sys.stderr.write(verdict.decode(errors="replace") or "ulogpy: start-up failed\n")
            os._exit(1)
        os.close(r)
        os.setsid()
        if os.fork() > 0:
            os._exit(0)
        os.chdir("/")
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
        self._w = w

    def report(self, ok: bool, message: str = "") -> None:
        if self._w is None:
            return
        try:
            os.write(self._w, b"ok\n" if ok else message.encode())
        finally:
            os.close(self._w)
            self._w = None
