"""A throwaway MariaDB server for tests: mariadb-install-db + mariadbd in a temporary directory.

The binaries come from Debian's ``mariadb-server`` package; the system server is
neither needed nor touched.  The server runs as the ``mysql`` user, listens only on a
unix socket in its own directory (no TCP: `skip-networking`, so processes in other
network namespaces reach it through the file system), and is stopped and deleted by
:meth:`MariaDB.close`.

    with MariaDB() as my:
        my.create_db("t1", ulogd_mysql_schema_sql())
        ...
        my.stop(); my.start()           # the server goes away and comes back
"""

from __future__ import annotations

import gzip
import os
import subprocess
import time
from pathlib import Path

from tests.tempserver import TempServer, server_skip_reason

__all__ = ["MariaDB", "mariadb_skip_reason", "ulogd_mysql_schema_sql"]

ULOGD_MYSQL_SCHEMA_GZ = Path("/usr/share/doc/ulogd2/mysql-ulogd2.sql.gz")
SERVER = Path("/usr/sbin/mariadbd")
INSTALL_DB = Path("/usr/bin/mariadb-install-db")
CLIENT = Path("/usr/bin/mariadb")
USER = "mysql"


def mariadb_skip_reason() -> str | None:
    missing = next((f"no {b} (Debian package mariadb-server)"
                    for b in (SERVER, INSTALL_DB, CLIENT) if not b.exists()), None)
    return server_skip_reason("MariaDB", USER, "mariadb-server", missing)


def ulogd_mysql_schema_sql() -> str:
    """The schema the ulogd2-mysql package ships, as is (for the `mariadb` client)."""
    return gzip.decompress(ULOGD_MYSQL_SCHEMA_GZ.read_bytes()).decode()


class MariaDB(TempServer):
    """One MariaDB server in a temporary directory, reached through a unix socket."""

    def __init__(self) -> None:
        super().__init__(USER, "ulogpy-my-")
        self.rundir = self.base / "run"
        self.rundir.mkdir(mode=0o777)
        os.chmod(self.rundir, 0o777)
        os.chown(self.rundir, self.user.pw_uid, self.user.pw_gid)
        self.socket = self.rundir / "mysqld.sock"
        self.proc: subprocess.Popen | None = None
        self._init()

    def _common_args(self) -> list[str]:
        return [f"--datadir={self.datadir}", f"--socket={self.socket}", "--skip-networking",
                f"--pid-file={self.rundir / 'mysqld.pid'}", f"--user={USER}"]

    def _init(self) -> None:
        proc = subprocess.run(
            [str(INSTALL_DB), "--no-defaults", "--auth-root-authentication-method=normal",
             "--skip-test-db", f"--datadir={self.datadir}", f"--user={USER}"],
            capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed: {proc.stdout}{proc.stderr}")

    def start(self) -> None:
        log = open(self.logfile, "ab")  # noqa: SIM115 - the server keeps it
        self.proc = subprocess.Popen(
            [str(SERVER), "--no-defaults", *self._common_args(), "--innodb-buffer-pool-size=32M",
             "--innodb-flush-log-at-trx-commit=0", "--skip-log-bin",
             "--innodb-log-file-size=16M", f"--log-error={self.logfile}"],
            stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited: {self._log_tail()}")
            if self.socket.exists() and self._ping():
                return
            time.sleep(0.1)
        raise RuntimeError(f"mariadbd did not start: {self._log_tail()}")

    def _ping(self) -> bool:
        import pymysql

        try:
            pymysql.connect(unix_socket=str(self.socket), user="root", connect_timeout=2).close()
        except pymysql.Error:
            return False
        return True

    def stop(self) -> None:
        """Shut the server down (sessions are cut) and wait for it to exit."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    # -- databases ----------------------------------------------------------------------
    def client(self, db: str, sql: str) -> str:
        """Run SQL through the `mariadb` client (understands `delimiter`); returns stdout."""
        proc = subprocess.run(
            [str(CLIENT), "--no-defaults", f"--socket={self.socket}", "-uroot", "-N", "-B",
             db], input=sql, capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"mariadb on {db} failed: {proc.stderr}")
        return proc.stdout

    def create_db(self, name: str, schema_sql: str | None = None) -> str:
        self.client("mysql", f"CREATE DATABASE `{name}`")
        if schema_sql:
            self.client(name, schema_sql)
        return name

    def connect(self, db: str):
        import pymysql

        return pymysql.connect(unix_socket=str(self.socket), user="root", database=db,
                               autocommit=True)

    def query(self, db: str, sql: str, params=None) -> list[tuple]:
        conn = self.connect(db)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall())
        finally:
            conn.close()

    def add_password_user(self, user: str, password: str) -> None:
        escaped = password.replace("\\", "\\\\").replace("'", "\\'")
        self.client("mysql", f"CREATE USER '{user}'@'localhost' IDENTIFIED BY '{escaped}'; "
                             f"GRANT ALL ON *.* TO '{user}'@'localhost'")
