"""A throwaway PostgreSQL cluster for tests: initdb + pg_ctl in a temporary directory.

The binaries come from Debian's ``postgresql`` package (/usr/lib/postgresql/*/bin); the
system cluster is neither needed nor touched.  The server runs as the ``postgres`` user
(initdb refuses root), listens only on a unix socket in its own directory (so processes
in other network namespaces reach it through the file system), and is stopped and
deleted by :meth:`PgCluster.close`.

    with PgCluster() as pg:
        dsn = pg.create_db("t1", schema_sql=ULOGD_SCHEMA)
        ...
        pg.restart()                  # the server goes away and comes back
"""

from __future__ import annotations

import glob
import gzip
import os
import random
import subprocess
import time
from pathlib import Path

from tests.tempserver import TempServer, server_skip_reason

__all__ = ["PgCluster", "ULOGD_SCHEMA_GZ", "pg_bindir", "pg_skip_reason", "ulogd_schema_sql"]

ULOGD_SCHEMA_GZ = Path("/usr/share/doc/ulogd2/pgsql-ulogd2.sql.gz")
SUPERUSER = "postgres"


def pg_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin that has initdb, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(found[-1]).parent if found else None


def pg_skip_reason() -> str | None:
    missing = None if pg_bindir() else \
        "no /usr/lib/postgresql/*/bin/initdb (Debian package postgresql; scripts/setup)"
    return server_skip_reason("PostgreSQL", SUPERUSER, "postgresql", missing)


def ulogd_schema_sql() -> str:
    """The schema the ulogd2-pgsql package ships, as is."""
    return gzip.decompress(ULOGD_SCHEMA_GZ.read_bytes()).decode()


class PgCluster(TempServer):
    """One PostgreSQL server in a temporary directory, reached through a unix socket."""

    def __init__(self, extra_conf: dict[str, str] | None = None) -> None:
        bindir = pg_bindir()
        if bindir is None:
            raise RuntimeError(pg_skip_reason() or "PostgreSQL binaries not found")
        self.bindir = bindir
        super().__init__(SUPERUSER, "ulogpy-pg-")
        self.sockdir = self.base / "sock"
        self.sockdir.mkdir()
        os.chown(self.sockdir, self.user.pw_uid, self.user.pw_gid)
        os.chmod(self.sockdir, 0o777)
        self.logfile.touch()
        os.chown(self.logfile, self.user.pw_uid, self.user.pw_gid)
        self.port = random.randint(20000, 60000)
        self.extra_conf = extra_conf or {}
        self.started = False
        self._init()

    # -- lifecycle --------------------------------------------------------------------
    def _as_postgres(self, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
        user = self.user

        def demote() -> None:
            os.setgid(user.pw_gid)
            os.setgroups([])
            os.setuid(user.pw_uid)

        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(self.base)}
        proc = subprocess.run(argv, preexec_fn=demote, env=env, capture_output=True,
                              text=True, timeout=timeout, cwd=self.base, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {proc.stdout}"
                               f"{proc.stderr}\n{self._log_tail()}")
        return proc

    def _init(self) -> None:
        self._as_postgres([str(self.bindir / "initdb"), "-D", str(self.datadir), "-U",
                           SUPERUSER, "--auth-local=trust", "--auth-host=reject",
                           "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
        conf = {
            "listen_addresses": "''",
            "unix_socket_directories": f"'{self.sockdir}'",
            "port": str(self.port),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "32MB",
            "max_connections": "40",
            **self.extra_conf,
        }
        with open(self.datadir / "postgresql.conf", "a") as f:
            for key, value in conf.items():
                f.write(f"{key} = {value}\n")
        # Password logins for the role tests create (`add_password_role`), trust otherwise.
        hba = self.datadir / "pg_hba.conf"
        hba.write_text("local all +pwusers scram-sha-256\n" + hba.read_text())

    def start(self) -> None:
        self._as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l",
                           str(self.logfile), "-w", "-t", "30", "start"])
        self.started = True
        if not getattr(self, "_roles_made", False):
            self.psql("postgres", "CREATE ROLE pwusers NOLOGIN")
            self._roles_made = True

    def stop(self, mode: str = "fast") -> None:
        if self.started:
            self._as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m",
                               mode, "-w", "-t", "30", "stop"])
            self.started = False

    def restart(self, down_for: float = 0.0) -> None:
        """Stop the server (fast: sessions are cut), stay down `down_for` s, start again."""
        self.stop()
        if down_for:
            time.sleep(down_for)
        self.start()

    def _stop_at_close(self) -> None:
        self.stop("immediate")

    # -- databases ----------------------------------------------------------------------
    def dsn(self, db: str = "postgres", user: str = SUPERUSER) -> str:
        return f"host={self.sockdir} port={self.port} dbname={db} user={user}"

    def psql(self, db: str, sql: str) -> str:
        """Run SQL through psql (stops at the first error); returns its output."""
        proc = subprocess.run(
            [str(self.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-A", "-t",
             "-h", str(self.sockdir), "-p", str(self.port), "-U", SUPERUSER, "-d", db],
            input=sql, capture_output=True, text=True, timeout=120, check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"psql on {db} failed: {proc.stderr}")
        return proc.stdout

    def create_db(self, name: str, schema_sql: str | None = None) -> str:
        """A new database (optionally loaded with `schema_sql`); returns its conninfo."""
        self.psql("postgres", f'CREATE DATABASE "{name}"')
        if schema_sql:
            self.psql(name, schema_sql)
        return self.dsn(name)

    def add_password_role(self, role: str, password: str) -> None:
        """A login role that must give `password` (scram-sha-256 through the socket)."""
        escaped = password.replace("'", "''")
        self.psql("postgres", f"CREATE ROLE \"{role}\" LOGIN SUPERUSER PASSWORD '{escaped}' "
                              "IN ROLE pwusers")
