"""A throwaway ClickHouse cluster for tests: ZooKeeper plus three servers on loopback.

Debian's ``clickhouse-server`` (18.16) and ``zookeeper`` packages; no system service is
used or touched.  Each server has its own directory (data, logs, config) and random
loopback ports.  The cluster ``ulogpy`` has two shards: shard 1 on servers ``a`` and
``b`` (two replicas), shard 2 on server ``c``.  Replicated tables get the ``{shard}`` and
``{replica}`` macros.

    with ClickHouseCluster() as ch:
        ch.url()                 # clickhouse://127.0.0.1:PORT,...:PORT/ulogpy
        ch.stop_server("b"); ch.start_server("b")
        ch.query("a", "SELECT 1")
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["ClickHouseCluster", "clickhouse_skip_reason"]

SERVER_BIN = "/usr/sbin/clickhouse-server"
ZK_JAR = Path("/usr/share/java/zookeeper.jar")
CLUSTER = "ulogpy"
DATABASE = "ulogpy"
#: name -> shard number; servers a and b replicate shard 1.
LAYOUT = {"a": 1, "b": 1, "c": 2}


def clickhouse_skip_reason() -> str | None:
    if not os.path.exists(SERVER_BIN):
        return "no clickhouse-server (Debian package clickhouse-server)"
    if not ZK_JAR.exists() or not shutil.which("java"):
        return "no ZooKeeper (Debian package zookeeper)"
    try:
        import clickhouse_driver  # noqa: F401
    except ImportError:
        return "no clickhouse-driver in the venv"
    return None


def _free_port() -> int:
    for _ in range(100):
        port = random.randint(20000, 60000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def _wait(what: str, ok, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if ok():
                return
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def _four_letters(port: int, word: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        s.sendall(word)
        out = b""
        while chunk := s.recv(4096):
            out += chunk
        return out


class ClickHouseCluster:
    def __init__(self, mark_cache_bytes: int = 5368709) -> None:
        #: Small for tests; benchmarks pass ClickHouse's default (5 GiB): with 5 MB the
        #: marks of a 100-million-row table no longer fit and every lookup rereads them.
        self.mark_cache_bytes = mark_cache_bytes
        self.base = Path(tempfile.mkdtemp(prefix="ulogpy-ch-"))
        self.zk_port = _free_port()
        self.ports = {name: (_free_port(), _free_port(), _free_port()) for name in LAYOUT}
        self.procs: dict[str, subprocess.Popen] = {}
        self.zk: subprocess.Popen | None = None

    # -- config ---------------------------------------------------------------------
    def _remote_servers(self) -> str:
        shards = []
        for shard in sorted(set(LAYOUT.values())):
            replicas = "".join(
                f"<replica><host>127.0.0.1</host><port>{self.ports[n][0]}</port></replica>"
                for n, s in LAYOUT.items() if s == shard)
            shards.append(f"<shard><internal_replication>true</internal_replication>"
                          f"{replicas}</shard>")
        return f"<{CLUSTER}>{''.join(shards)}</{CLUSTER}>"

    def _config(self, name: str) -> Path:
        tcp, http, inter = self.ports[name]
        d = self.base / name
        for sub in ("data", "tmp", "log", "user_files", "format_schemas"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "users.xml").write_text(
            "<yandex><profiles><default></default></profiles>"
            "<users><default><password></password><networks><ip>::/0</ip></networks>"
            "<profile>default</profile><quota>default</quota></default></users>"
            "<quotas><default></default></quotas></yandex>")
        conf = d / "config.xml"
        conf.write_text(f"""<yandex>
<logger><level>warning</level><log>{d}/log/server.log</log>
<errorlog>{d}/log/error.log</errorlog><console>0</console></logger>
<listen_host>127.0.0.1</listen_host>
<tcp_port>{tcp}</tcp_port><http_port>{http}</http_port>
<interserver_http_port>{inter}</interserver_http_port>
<interserver_http_host>127.0.0.1</interserver_http_host>
<path>{d}/data/</path><tmp_path>{d}/tmp/</tmp_path>
<user_files_path>{d}/user_files/</user_files_path>
<format_schema_path>{d}/format_schemas/</format_schema_path>
<users_config>{d}/users.xml</users_config>
<default_profile>default</default_profile><default_database>default</default_database>
<mark_cache_size>{self.mark_cache_bytes}</mark_cache_size>
<uncompressed_cache_size>8589934</uncompressed_cache_size>
<max_concurrent_queries>50</max_concurrent_queries>
<zookeeper><node><host>127.0.0.1</host><port>{self.zk_port}</port></node>
<session_timeout_ms>6000</session_timeout_ms></zookeeper>
<macros><shard>{LAYOUT[name]}</shard><replica>{name}</replica></macros>
<remote_servers>{self._remote_servers()}</remote_servers>
<distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
</yandex>
""")
        return conf

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> ClickHouseCluster:
        zdir = self.base / "zk"
        (zdir / "data").mkdir(parents=True)
        (zdir / "zoo.cfg").write_text(
            f"tickTime=500\ndataDir={zdir}/data\nclientPort={self.zk_port}\n"
            "clientPortAddress=127.0.0.1\n4lw.commands.whitelist=*\n"
            "admin.enableServer=false\nmaxSessionTimeout=60000\n")
        (zdir / "log4j.properties").write_text(
            "log4j.rootLogger=WARN, F\nlog4j.appender.F=org.apache.log4j.FileAppender\n"
            f"log4j.appender.F.File={zdir}/zk.log\n"
            "log4j.appender.F.layout=org.apache.log4j.PatternLayout\n")
        with open(zdir / "zk.out", "wb") as err:  # the child keeps its own copy
            self.zk = subprocess.Popen(
                ["java", "-Xmx128m", f"-Dlog4j.configuration=file:{zdir}/log4j.properties",
                 "-cp", f"{zdir}:{ZK_JAR}", "org.apache.zookeeper.server.ZooKeeperServerMain",
                 str(zdir / "zoo.cfg")],
                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        _wait("ZooKeeper", lambda: b"Mode" in _four_letters(self.zk_port, b"srvr"), 30)
        time.sleep(1.0)  # `srvr` may answer before sessions are served
        for name in LAYOUT:
            self.start_server(name, wait=False)
        for name in LAYOUT:
            self.wait_server(name)
        return self

    def start_server(self, name: str, wait: bool = True) -> None:
        conf = self._config(name)
        out = open(self.base / name / "log" / "stdout", "ab")
        self.procs[name] = subprocess.Popen(
            [SERVER_BIN, f"--config-file={conf}"], stdout=out,
            stderr=subprocess.STDOUT, cwd=self.base / name, start_new_session=True)
        out.close()
        if wait:
            self.wait_server(name)

    def wait_server(self, name: str, timeout: float = 30.0) -> None:
        proc = self.procs[name]

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"clickhouse {name} exited {proc.returncode}: "
                                   f"{self.log(name)[-2000:]}")
            return self.query(name, "SELECT 1") == [(1,)]

        deadline = time.monotonic() + timeout
        while True:
            try:
                if up():
                    return
            except RuntimeError:
                raise
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"clickhouse {name} did not answer: {self.log(name)[-2000:]}")
            time.sleep(0.1)

    def stop_server(self, name: str, kill: bool = True) -> None:
        """Kill (the default: an outage as abrupt as a crash, and instant) or SIGTERM
        (which 18.16 takes ~10 s to obey while clients hold connections)."""
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.kill() if kill else proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        for name in list(self.procs):
            with contextlib.suppress(Exception):
                self.stop_server(name)
        if self.zk is not None:
            self.zk.kill()
            try:
                self.zk.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.zk.kill()
                self.zk.wait()
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> ClickHouseCluster:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc) -> None:
        self.close()

    # -- use ------------------------------------------------------------------------
    def log(self, name: str) -> str:
        text = ""
        for f in ("stdout", "error.log"):
            p = self.base / name / "log" / f
            if p.exists():
                text += p.read_text(errors="replace")
        return text

    def port(self, name: str) -> int:
        return self.ports[name][0]

    def url(self, names: str = "abc", database: str = DATABASE, table: str = "") -> str:
        hosts = ",".join(f"127.0.0.1:{self.port(n)}" for n in names)
        return f"clickhouse://{hosts}/{database}" + (f"?table={table}" if table else "")

    def query(self, name: str, sql: str, **settings) -> list[tuple]:
        from clickhouse_driver import Client

        client = Client("127.0.0.1", port=self.port(name), connect_timeout=2,
                        send_receive_timeout=30, settings=settings or None)
        try:
            return client.execute(sql)
        finally:
            client.disconnect()
