"""The command line, run as a subprocess: -h, -V, bad options, -i, -u."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.ulogd_ref import ULOGPY
from ulogpy import ULOGD_COMPAT_VERSION, __version__
from ulogpy.core.registry import registry

INTROSPECT = Path(__file__).resolve().parents[1] / "fixtures" / "introspect"
ULOGD_PLUGIN_DIR = Path("/usr/lib/x86_64-linux-gnu/ulogd")
OPTIONS = [("-h", "--help"), ("-V", "--version"), ("-d", "--daemon"), ("-v", "--verbose"),
           ("-l", "--loglevel"), ("-c", "--configfile"), ("-p", "--pidfile"),
           ("-u", "--uid"), ("-i", "--info")]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ULOGPY, *args], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help(flag: str) -> None:
    proc = run_cli(flag)
    assert proc.returncode == 0
    assert proc.stderr == ""
    out = proc.stdout
    assert out.startswith(f"ulogpy Version {__version__}")
    assert "Parameters:" in out
    for short, long in OPTIONS:
        assert f"\t{short} {long}\t" in out, short
    assert "--check\t" in out


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version(flag: str) -> None:
    proc = run_cli(flag)
    assert proc.returncode == 0
    assert proc.stderr == ""
    assert __version__ in proc.stdout and ULOGD_COMPAT_VERSION in proc.stdout
    assert "Parameters:" not in proc.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["-x"], "-x"), (["--bogus"], "--bogus"), (["-c"], "-c"), (["stray"], "stray"),
     (["-l", "loud"], "loud")],
)
def test_bad_command_line(args: list[str], needle: str) -> None:
    """Exit 1, the problem on stderr; the usage on stdout for unknown options."""
    proc = run_cli(*args)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("ulogpy: ") and needle in proc.stderr
    if args[0] != "-l":
        assert "Parameters:" in proc.stdout and "\t-c --configfile\t" in proc.stdout


def _plugin_names() -> list[str]:
    return sorted(registry())


@pytest.mark.parametrize("name", _plugin_names())
def test_info_for_every_plugin(name: str) -> None:
    """`-i NAME` prints ulogd's layout; for plugins ulogd has, every line of `ulogd -i`
    in order, with only ulogpy's own options and keys (marked `[ulogpy]`) added."""
    proc = run_cli("-i", name)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert lines[0] == f"Name: {name}"
    assert "Input keys:" in lines and "Output keys:" in lines
    assert lines.index("Input keys:") < lines.index("Output keys:")
    for line in lines[1:]:
        assert line in ("Config options:", "Input keys:", "Output keys:") or \
            line.startswith("\t"), line
    reference = INTROSPECT / f"{name}.txt"
    if not reference.exists():
        return  # a plugin of ulogpy's own
    expected = reference.read_text().splitlines()
    pos = 0
    extra = []
    for line in lines:
        if pos < len(expected) and line == expected[pos]:
            pos += 1
        else:
            extra.append(line)
    assert pos == len(expected), f"missing from line {pos}: {expected[pos]!r}"
    for line in extra:
        assert line.startswith(("\tVar: ", "\tKey: ")) and line.endswith("[ulogpy]"), line


@pytest.mark.parametrize("name", _plugin_names())
def test_info_accepts_name_case_and_ulogd_so_path(name: str) -> None:
    by_name = run_cli("-i", name).stdout
    assert run_cli("-i", name.lower()).stdout == by_name
    candidates = sorted(ULOGD_PLUGIN_DIR.glob(f"ulogd_*_{name}.so"))
    so = str(candidates[0]) if candidates else f"{ULOGD_PLUGIN_DIR}/ulogd_output_{name}.so"
    proc = run_cli("--info", so)
    assert proc.returncode == 0
    assert proc.stdout == by_name


def test_info_nfct_so_path() -> None:
    proc = run_cli("-i", "/usr/lib/x86_64-linux-gnu/ulogd/ulogd_inpflow_NFCT.so")
    assert proc.returncode == 0
    assert proc.stdout.startswith("Name: NFCT\nConfig options:\n\tVar: pollinterval ")
    assert "\tKey: ct (raw data)\n" in proc.stdout


@pytest.mark.parametrize("arg", ["NOSUCH", f"{ULOGD_PLUGIN_DIR}/ulogd_output_NOSUCH.so"])
def test_info_unknown_plugin(arg: str) -> None:
    proc = run_cli("-i", arg)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert "NOSUCH" in proc.stderr
    assert ", ".join(_plugin_names()) in proc.stderr


def test_info_matches_real_ulogd() -> None:
    """Cross-check the stored introspection files against the installed ulogd, if any."""
    ulogd = Path("/usr/sbin/ulogd")
    if not ulogd.exists():
        pytest.skip("reference ulogd not installed")
    for name in _plugin_names():
        so = sorted(ULOGD_PLUGIN_DIR.glob(f"ulogd_*_{name}.so"))
        if not so:
            continue
        real = subprocess.run([str(ulogd), "-i", str(so[0])], capture_output=True, text=True,
                              timeout=30).stdout
        assert real == (INTROSPECT / f"{name}.txt").read_text(), name


def test_unknown_user(tmp_path: Path) -> None:
    """`-u nosuchuser` stops start-up with ulogd's message, before the config is read."""
    proc = run_cli("-u", "nosuchuser", "-c", str(tmp_path / "absent.conf"))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "Unknown user nosuchuser." in proc.stdout + proc.stderr
    assert "absent.conf" not in proc.stderr

