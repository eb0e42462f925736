"""`ulogpy --check` names what the running user lacks, one line per problem.

Run through the real CLI as the user in question (setpriv drops root and every
capability), and, for a busy NFLOG group, against a real daemon holding it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live.test_systemd_notify import NotifySocket
from tests.netns import Netns
from tests.ulogd_ref import ULOGPY

NFLOG_STACK = ("stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,print1:PRINTPKT,"
               "emu1:LOGEMU\n")


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory others can read (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="ulogpy-check-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def nflog_conf(directory: Path, group: int = 0) -> Path:
    conf = directory / "c.conf"
    conf.write_text(f'[global]\nlogfile="{directory}/own.log"\n{NFLOG_STACK}'
                    f"[log1]\ngroup={group}\n"
                    f'[emu1]\nfile="{directory}/x/packets.log"\nsync=1\n')
    conf.chmod(0o644)
    return conf


def check(conf: Path, *prefix: str, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, ULOGPY, "--check", "-c", str(conf), *extra],
                          capture_output=True, text=True, timeout=30)


def as_nobody() -> tuple[str, ...]:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run --check as another user")
    user = pwd.getpwnam("nobody")
    return ("setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all")


def test_unprivileged_user_gets_one_line_per_problem(open_dir: Path) -> None:
    conf = nflog_conf(open_dir)
    proc = check(conf, *as_nobody())
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout.startswith(f"{conf}: OK, 1 stack(s)")
    assert proc.stderr.splitlines() == [
        "ulogpy: log1:NFLOG: missing capability CAP_NET_ADMIN (needed to bind an NFLOG group)",
        f"ulogpy: logfile: user nobody cannot create {open_dir}/own.log "
        f"(directory {open_dir} is not writable)",
        f"ulogpy: emu1:LOGEMU: user nobody cannot create {open_dir}/x/packets.log "
        f"(directory {open_dir} is not writable)",
    ]


def test_root_with_everything_passes(open_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    conf = nflog_conf(open_dir, group=4711)  # a group nobody here holds
    proc = check(conf)
    assert (proc.returncode, proc.stderr) == (0, "")


def test_files_a_later_uid_must_reopen(open_dir: Path) -> None:
    """With `-u`, files are checked for that user: SIGHUP reopens them after the drop."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    conf = nflog_conf(open_dir, group=4711)
    proc = check(conf, extra=("-u", "nobody"))
    assert proc.returncode == 2
    assert f"ulogpy: emu1:LOGEMU: user nobody cannot create {open_dir}/x/packets.log" \
        in proc.stderr
    assert "CAP_NET_ADMIN" not in proc.stderr  # root binds before dropping
    nobody = pwd.getpwnam("nobody")
    os.chown(open_dir, nobody.pw_uid, nobody.pw_gid)
    proc = check(conf, extra=("-u", "nobody"))
    assert (proc.returncode, proc.stderr) == (0, "")


@pytest.mark.live
def test_busy_nflog_group_names_the_pid_holding_it(live_ok, tmp_path: Path) -> None:
    holder_conf = nflog_conf(tmp_path, group=9)
    with Netns("chk") as ns:
        notify = NotifySocket(str(tmp_path / "notify"))
        holder = ns.popen([ULOGPY, "-c", str(holder_conf)],
                          env={**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify")},
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            notify.wait_for("READY", "1", proc=holder)
            other = tmp_path / "other"
            other.mkdir()
            proc = check(nflog_conf(other, group=9), "ip", "netns", "exec", ns.name)
            assert proc.returncode == 2, proc.stderr
            assert proc.stderr.splitlines() == [
                f"ulogpy: log1:NFLOG: NFLOG group 9 is already bound by pid {holder.pid} "
                "(ulogpy); stop it or use another group"]
            free = check(nflog_conf(other, group=10), "ip", "netns", "exec", ns.name)
            assert (free.returncode, free.stderr) == (0, "")
        finally:
            holder.terminate()
            holder.communicate(timeout=15)
            notify.close()


@pytest.mark.live
def test_nfct_sysctl_it_cannot_turn_on(live_ok, open_dir: Path) -> None:
    """A fresh namespace has conntrack accounting off; without CAP_NET_ADMIN it stays off."""
    conf = open_dir / "ct.conf"
    conf.write_text("[global]\nstack=ct1:NFCT,ip2str1:IP2STR,j1:JSON\n"
                    "[ct1]\nconntrack_acct=1\n"
                    f'[j1]\nfile="{open_dir}/x.json"\n')
    conf.chmod(0o644)
    nobody = pwd.getpwnam("nobody")
    os.chown(open_dir, nobody.pw_uid, nobody.pw_gid)
    with Netns("chk") as ns:
        ns.nft("table inet t {\n chain c {\n  type filter hook output priority 0;\n"
               "  ct state new counter\n }\n}\n")  # loads nf_conntrack in the namespace
        proc = check(conf, "ip", "netns", "exec", ns.name, *as_nobody())
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        "ulogpy: ct1:NFCT: missing capability CAP_NET_ADMIN (needed to subscribe to "
        "conntrack events)",
        "ulogpy: ct1:NFCT: conntrack_acct=1 but /proc/sys/net/netfilter/nf_conntrack_acct "
        "is 0 and not writable; set it before start or set conntrack_acct=0",
    ]
