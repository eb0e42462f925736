"""The shipped systemd files (dist/): checked by systemd's own tools, and lived in.

* `systemd-analyze verify` accepts the unit, and `systemd-analyze security
  --offline=true` rates it at most 2.0 (Debian's ulogd2.service: 9.6);
* `systemd-sysusers` and `systemd-tmpfiles`, run on a scratch root, create the user
  and the directories the unit's ReadWritePaths= name;
* the daemon runs with exactly the privileges the unit gives it (its user, its one
  capability, no_new_privs, its umask; PID 1 here is not systemd, so setpriv applies
  them): READY=1 comes, a conntrack flow and an NFLOG packet are logged, the sysctls
  NFCT turns on are turned on, and the files are created with the unit's umask.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live.test_systemd_notify import NotifySocket, wait_until
from tests.netns import Netns
from tests.ulogd_ref import ULOGPY

pytestmark = pytest.mark.live

DIST = Path(__file__).resolve().parents[2] / "dist"
UNIT = DIST / "ulogpy.service"
DEBIAN_UNIT = Path("/lib/systemd/system/ulogd2.service")
MAX_EXPOSURE = 2.0
CAP_NET_ADMIN = 12
EXPOSURE = re.compile(r"Overall exposure level for \S+: (\d+\.\d+)")


def service_settings() -> dict[str, list[str]]:
    """The [Service] section of the shipped unit: each key's values, in order."""
    settings: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def installed_copy(tmp_path: Path) -> Path:
    """The unit as installed from this checkout (ExecStart= names the venv's ulogpy)."""
    copy = tmp_path / "ulogpy.service"
    copy.write_text(UNIT.read_text().replace("ExecStart=/usr/bin/ulogpy ",
                                             f"ExecStart={ULOGPY} "))
    assert f"ExecStart={ULOGPY} " in copy.read_text()
    return copy


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True,
                          timeout=60)


def exposure(unit: Path) -> float:
    proc = analyze("security", "--offline=true", "--no-pager", str(unit))
    match = EXPOSURE.search(proc.stdout)
    assert match, proc.stdout + proc.stderr
    return float(match[1])


def test_verify_is_clean(tmp_path: Path) -> None:
    unit = installed_copy(tmp_path)
    proc = analyze("verify", str(unit))
    ours = [line for line in (proc.stdout + proc.stderr).splitlines() if "ulogpy" in line]
    assert proc.returncode == 0 and not ours, proc.stdout + proc.stderr


def test_security_exposure_at_most_2(tmp_path: Path) -> None:
    ours = exposure(installed_copy(tmp_path))
    assert ours <= MAX_EXPOSURE, ours
    if DEBIAN_UNIT.exists():  # what it replaces, for the record (9.6 on Debian 12)
        assert exposure(DEBIAN_UNIT) > ours


def test_unit_is_notify_foreground_and_reloads_with_sighup() -> None:
    s = service_settings()
    assert s["Type"] == ["notify"]
    exec_start = s["ExecStart"][0].split()
    assert "-d" not in exec_start and "--daemon" not in exec_start
    assert "-u" not in exec_start  # the unit's User= runs it, not a privilege drop
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["WatchdogSec"]


def test_sysusers_and_tmpfiles_make_what_the_unit_writes(tmp_path: Path) -> None:
    if not (shutil.which("systemd-sysusers") and shutil.which("systemd-tmpfiles")):
        pytest.skip("systemd-sysusers / systemd-tmpfiles are not installed")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for name in ("passwd", "group"):
        shutil.copy(f"/etc/{name}", root / "etc" / name)
    subprocess.run(["systemd-sysusers", f"--root={root}", str(DIST / "ulogpy.sysusers")],
                   check=True, capture_output=True, timeout=30)
    entry = next(line.split(":") for line in (root / "etc/passwd").read_text().splitlines()
                 if line.startswith("ulogpy:"))
    uid, gid = int(entry[2]), int(entry[3])
    assert 0 < uid < 1000 and entry[6] == "/usr/sbin/nologin"
    subprocess.run(["systemd-tmpfiles", "--create", f"--root={root}",
                    str(DIST / "ulogpy.tmpfiles")], check=True, capture_output=True, timeout=30)
    writable = service_settings()["ReadWritePaths"][0].split()
    for path in writable:
        st = (root / path.lstrip("/")).stat()
        assert stat.S_ISDIR(st.st_mode) and st.st_uid == uid, path
        assert st.st_mode & 0o007 == 0, (path, oct(st.st_mode))  # nothing for others
    assert (root / "run/ulogpy").stat().st_gid == gid


def _caps(pid: int) -> dict[str, int]:
    caps = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.startswith("Cap"):
            caps[key] = int(value, 16)
        elif key == "NoNewPrivs":
            caps[key] = int(value)
    return caps


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory the unprivileged user can reach (pytest's tmp_path is root's 0700)."""
    path = Path(tempfile.mkdtemp(prefix="ulogpy-unit-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_daemon_runs_with_the_units_privileges(live_ok, open_dir: Path) -> None:
    s = service_settings()
    caps = s["AmbientCapabilities"][0].lower().replace("cap_", "")
    assert s["CapabilityBoundingSet"] == s["AmbientCapabilities"] == ["CAP_NET_ADMIN"]
    assert s["NoNewPrivileges"] == ["yes"]
    umask = int(s["UMask"][0], 8)
    user = pwd.getpwnam("nobody")  # stands in for User=ulogpy (not created on this host)
    work = open_dir
    work.chmod(0o755)
    os.chown(work, user.pw_uid, user.pw_gid)
    conf = work / "ulogpy.conf"
    conf.write_text(
        "[global]\n"
        f'logfile="{work}/own.log"\n'
        "stack=ct1:NFCT,ip2str1:IP2STR,print1:PRINTFLOW,emu1:LOGEMU\n"
        "stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str2:IP2STR,print2:PRINTPKT,emu2:LOGEMU\n"
        "[ct1]\nhash_enable=0\nevent_mask=1\nconntrack_acct=1\n"
        "[log1]\ngroup=5\n"
        f'[emu1]\nfile="{work}/flows.log"\nsync=1\n'
        f'[emu2]\nfile="{work}/packets.log"\nsync=1\n'
    )
    setpriv = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
               f"--inh-caps=-all,+{caps}", f"--ambient-caps=-all,+{caps}",
               f"--bounding-set=-all,+{caps}", "--no-new-privs"]
    with Netns("sdu") as ns:
        ns.nft("table inet t {\n chain out {\n  type filter hook output priority 0;\n"
               "  udp dport 9 ct state new log group 5\n }\n}\n")
        notify_path = work / "notify"
        notify = NotifySocket(str(notify_path))
        os.chown(notify_path, user.pw_uid, user.pw_gid)
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns.name, *setpriv, ULOGPY, "-c", str(conf)],
            env={**os.environ, "NOTIFY_SOCKET": str(notify_path)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=lambda: os.umask(umask))
        try:
            notify.wait_for("READY", "1", proc=proc)
            got = _caps(proc.pid)
            assert got["CapEff"] == got["CapPrm"] == got["CapBnd"] == 1 << CAP_NET_ADMIN, got
            assert got["NoNewPrivs"] == 1
            assert os.stat(f"/proc/{proc.pid}").st_uid == user.pw_uid
            ns.run([sys.executable, "-c",
                    "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                    "s.bind(('127.0.0.1', 23456))\ns.sendto(b'x', ('127.0.0.1', 9))\n"])
            for name in ("flows.log", "packets.log"):
                path = work / name
                wait_until(lambda p=path: p.exists() and "SPT=23456 DPT=9 " in p.read_text(),
                           what=f"the flow in {name}")
                assert stat.S_IMODE(path.stat().st_mode) == 0o640 & ~umask
                assert path.stat().st_uid == user.pw_uid
            acct = ns.run(["sysctl", "-n", "net.netfilter.nf_conntrack_acct"]).stdout.strip()
            assert acct == "1"
            proc.terminate()
            notify.wait_for("STOPPING", "1")
            _, err = proc.communicate(timeout=15)
            assert proc.returncode == 0, err
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)
            notify.close()
