"""`ulogpy --check`: what the running user lacks to start this configuration.

A valid configuration can still fail at start, or later: a netlink input
without CAP_NET_ADMIN, an NFCT that must turn on a sysctl it cannot write,
an output directory (or, after `-u`, a file SIGHUP reopens) the user cannot
write, an NFLOG group another process already holds.  Each is found here
from the running process's own view (its capability set, `os.access`,
`/proc/net`), before anything is bound, and said in one line naming the
plugin instance and what to do.

Exit status of `--check`: 0 when the configuration is valid and nothing is
missing, 1 for an invalid configuration, 2 when it is valid but this user
cannot run it as it stands.
"""

from __future__ import annotations

import os
import pwd
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

from ulogpy.core.plugin import Plugin
from ulogpy.transports.file import FileSink

#: Status of `--check` for a valid configuration that this user cannot run.
EXIT_PROBLEMS = 2
CAP_NET_ADMIN = 12
#: Inputs that talk to nfnetlink, which only CAP_NET_ADMIN may bind and subscribe to.
NETLINK_INPUTS = {"NFCT": "subscribe to conntrack events",
                  "NFLOG": "bind an NFLOG group",
                  "NFACCT": "query nfacct objects"}
#: NFCT options that write a sysctl at start, and the sysctl.
NFCT_SYSCTLS = (("conntrack_acct", "net/netfilter/nf_conntrack_acct"),
                ("conntrack_timestamp", "net/netfilter/nf_conntrack_timestamp"))
NETLINK_NETFILTER = 12
PROC = Path("/proc")


def effective_caps(pid: str = "self") -> int:
    """The effective capability set of a process, as a bit mask."""
    for line in (PROC / pid / "status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def _existing_ancestor(path: str) -> str:
    """`path`, or the nearest parent that exists (outputs create missing directories)."""
    path = os.path.abspath(path)
    while not os.path.exists(path) and path != "/":
        path = os.path.dirname(path)
    return path


def _writable_by(path: str, user: pwd.struct_passwd) -> bool:
    """Mode bits as `user` would see them (a later `-u` user: SIGHUP reopens as them)."""
    if user.pw_uid == 0:
        return True
    st = os.stat(path)
    groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
    if st.st_uid == user.pw_uid:
        return bool(st.st_mode & stat.S_IWUSR)
    if st.st_gid in groups:
        return bool(st.st_mode & stat.S_IWGRP)
    return bool(st.st_mode & stat.S_IWOTH)


def _writable(path: str, user: pwd.struct_passwd | None) -> bool:
    if user is None:
        return os.access(path, os.W_OK)
    return _writable_by(path, user)


def path_problem(what: str, path: str, user: pwd.struct_passwd | None) -> str | None:
    """Why `path` (a file to create or append to) is not writable, or None."""
    try:
        return _path_problem(what, path, user)
    except OSError as exc:
        return f"{what}: cannot inspect {path}: {exc.strerror}"


def _path_problem(what: str, path: str, user: pwd.struct_passwd | None) -> str | None:
    target = _existing_ancestor(path)
    who = user.pw_name if user is not None else _me()
    if target == os.path.abspath(path):
        if os.path.isdir(target) and not os.access(target, os.X_OK):
            return f"{what}: user {who} cannot enter directory {target}"
        if not _writable(target, user):
            return f"{what}: user {who} cannot write {target}"
        return None
    if not os.path.isdir(target):
        return f"{what}: {target} is not a directory (needed for {path})"
    if not _writable(target, user):
        return f"{what}: user {who} cannot create {path} (directory {target} is not writable)"
    return None


def _me() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


# ------------------------------------------------------------------ NFLOG groups


def nflog_holders() -> dict[int, int]:
    """NFLOG group → netlink port id of the socket bound to it (this namespace)."""
    holders = {}
    try:
        text = (PROC / "net/netfilter/nfnetlink_log").read_text()
    except OSError:
        return holders  # module not loaded: no group is bound
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0].isdigit():
            holders[int(fields[0])] = int(fields[1])
    return holders


def netlink_inode(portid: int) -> int | None:
    """The socket inode of the NETLINK_NETFILTER socket with `portid` (/proc/net/netlink)."""
    try:
        lines = (PROC / "net/netlink").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        f = line.split()
        if len(f) >= 10 and f[1] == str(NETLINK_NETFILTER) and f[2] == str(portid):
            return int(f[9])
    return None


def socket_owner(inode: int) -> int | None:
    """The pid of a process with a descriptor on socket `inode` (readable /proc only)."""
    wanted = f"socket:[{inode}]"
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) == wanted:
                    return int(entry.name)
        except OSError:
            continue
    return None


def _comm(pid: int) -> str:
    try:
        return (PROC / str(pid) / "comm").read_text().strip()
    except OSError:
        return "?"


def group_problem(inst: Plugin, group: int, holders: dict[int, int]) -> str | None:
    portid = holders.get(group)
    if portid is None:
        return None
    inode = netlink_inode(portid)
    pid = socket_owner(inode) if inode is not None else None
    holder = f"pid {pid} ({_comm(pid)})" if pid is not None else f"netlink port {portid}"
    return f"{inst}: NFLOG group {group} is already bound by {holder}; stop it or use another group"


# ------------------------------------------------------------------ the report


def problems(config, pipeline, user: pwd.struct_passwd | None = None) -> Iterator[str]:
    """Every reason this process (then `user`, after `-u`) cannot run the pipeline."""
    caps = effective_caps()
    holders = nflog_holders()
    for inp in pipeline.inputs:
        why = NETLINK_INPUTS.get(inp.name)
        if why is not None and not caps & (1 << CAP_NET_ADMIN):
            yield f"{inp}: missing capability CAP_NET_ADMIN (needed to {why})"
        if inp.name == "NFCT":
            for option, sysctl in NFCT_SYSCTLS:
                path = PROC / "sys" / sysctl
                if getattr(inp.config, option, 0) and path.exists() \
                        and path.read_text().strip() != "1" and not os.access(path, os.W_OK):
                    yield (f"{inp}: {option}=1 but {path} is 0 and not writable; "
                           f"set it before start or set {option}=0")
        if inp.name == "NFLOG":
            problem = group_problem(inp, inp.config.group, holders)
            if problem:
                yield problem
    logfile = config.global_options.logfile
    if logfile and logfile not in ("syslog", "stdout"):
        problem = path_problem("logfile", logfile, user)
        if problem:
            yield problem
    for out in pipeline.outputs:
        transport = getattr(out, "transport", None)
        if isinstance(transport, FileSink):
            problem = path_problem(str(out), transport.path, user)
            if problem:
                yield problem
        if getattr(out.config, "queue_policy", None) == "spool":
            problem = path_problem(f"{out} spool_dir", out.config.spool_dir, user)
            if problem:
                yield problem


def report_problems(config, pipeline, user: pwd.struct_passwd | None = None) -> int:
    """Print each problem as one line on stderr; the exit status of `--check`."""
    found = list(dict.fromkeys(problems(config, pipeline, user)))
    for line in found:
        sys.stderr.write(f"ulogpy: {line}\n")
    return EXIT_PROBLEMS if found else 0
