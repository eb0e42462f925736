"""Command line: ulogd's options with ulogd's meanings, plus `--check` and
`--metrics-listen`.

    ulogpy [-c FILE] [-d] [-p PIDFILE] [-u USER] [-v] [-l LEVEL] [-i PLUGIN] [-V] [-h]
           [--check] [--metrics-listen HOST:PORT]

Every start-up problem ends with one clear line on stderr and exit status 1,
never a traceback.
"""

from __future__ import annotations

import getopt
import sys

from ulogpy import ULOGD_COMPAT_VERSION, __version__
from ulogpy.config import DEFAULT_CONFIG
from ulogpy.config.model import LISTEN_FORMAT, parse_listen

USAGE = f"""ulogpy Version {__version__} (compatible with ulogd {ULOGD_COMPAT_VERSION})
A Netfilter logging daemon: reads conntrack events and NFLOG packets and
writes them through ulogd-style plugin stacks.

Parameters:
\t-h --help\tThis help page
\t-V --version\tPrint version information
\t-d --daemon\tDaemonize (fork into background)
\t-v --verbose\tAlso write log lines to standard error
\t-l --loglevel\tSet log level (1 debug, 3 info, 5 notice, 7 error, 8 fatal)
\t-c --configfile\tUse alternative config file (ulogd.conf syntax, or .toml)
\t-p --pidfile\tRecord ulogpy PID in file (locked while running)
\t-u --uid\tChange UID/GID after the sockets are open
\t-i --info\tDisplay infos about plugin (name or ulogd .so path)
\t   --check\tValidate the config file and what this user lacks, then exit
\t\t\t(1: bad config, 2: valid but cannot run as is)
\t   --metrics-listen HOST:PORT\tServe Prometheus metrics there ("" = off;
\t\t\toverrides [global] metrics_listen)
Without -c, {DEFAULT_CONFIG} is read if it exists, else the embedded default.
"""

SHORT = "c:p:dvl:hVu:i:"
LONG = ["configfile=", "pidfile=", "daemon", "verbose", "loglevel=", "help", "version",
        "uid=", "info=", "check", "metrics-listen="]


class Options:
    def __init__(self) -> None:
        self.config: str | None = None
        self.pidfile: str | None = None
        self.daemon = False
        self.verbose = False
        self.loglevel: int | None = None
        self.user: str | None = None
        self.check = False
        #: --metrics-listen: None = [global] metrics_listen decides.
        self.metrics_listen: str | None = None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["db"]:
        from ulogpy.tools.dbinit import main as db_main

        return db_main(argv[1:])
    if argv[:1] == ["nat-lookup"]:
        from ulogpy.tools.natlookup.cli import main as nat_lookup_main

        return nat_lookup_main(argv[1:])
    try:
        pairs, rest = getopt.gnu_getopt(argv, SHORT, LONG)
    except getopt.GetoptError as exc:
        sys.stderr.write(f"ulogpy: {exc}\n")
        sys.stdout.write(USAGE)
        return 1
    if rest:
        sys.stderr.write(f"ulogpy: unexpected argument '{rest[0]}'\n")
        sys.stdout.write(USAGE)
        return 1
    opts = Options()
    for flag, value in pairs:
        if flag in ("-h", "--help"):
            sys.stdout.write(USAGE)
            return 0
        if flag in ("-V", "--version"):
            sys.stdout.write(
                f"ulogpy Version {__version__} (ulogd {ULOGD_COMPAT_VERSION} compatible)\n"
            )
            return 0
        if flag in ("-i", "--info"):
            return _info(value)
        if flag in ("-c", "--configfile"):
            opts.config = value
        elif flag in ("-p", "--pidfile"):
            opts.pidfile = value
        elif flag in ("-d", "--daemon"):
            opts.daemon = True
        elif flag in ("-v", "--verbose"):
            opts.verbose = True
        elif flag in ("-l", "--loglevel"):
            try:
                opts.loglevel = int(value, 0)
            except ValueError:
                sys.stderr.write(f"ulogpy: -l {value}: not a log level (1, 3, 5, 7 or 8)\n")
                return 1
        elif flag in ("-u", "--uid"):
            opts.user = value
        elif flag == "--check":
            opts.check = True
        elif flag == "--metrics-listen":
            try:
                parse_listen(value)
            except ValueError as exc:
                sys.stderr.write(f"ulogpy: --metrics-listen: {exc}; valid: {LISTEN_FORMAT}\n")
                return 1
            opts.metrics_listen = value
    from ulogpy.daemon.app import run

    return run(opts)


def _info(name: str) -> int:
    from ulogpy.core.info import describe
    from ulogpy.core.registry import RegistryError, registry

    try:
        text = describe(name)
    except RegistryError as exc:
        sys.stderr.write(f"ulogpy: {exc}\n")
        return 1
    if text is None:
        sys.stderr.write(
            f"ulogpy: no plugin '{name}'; known: {', '.join(sorted(registry()))}\n"
        )
        return 1
    sys.stdout.write(text)
    return 0
