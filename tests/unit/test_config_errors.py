"""Configuration errors through the real CLI (`ulogpy --check -c FILE`, `ulogpy -c FILE`).

Every class of error must end with exit status 1, no traceback, and one message on stderr
naming the file and line, the [section], the option or plugin, and what would be valid.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ulogd_ref import ULOGPY
from ulogpy.core.plugin import Kind
from ulogpy.core.registry import registry

CT_STACK = "stack=ct1:NFCT,ip2str1:IP2STR,print1:PRINTFLOW,emu1:LOGEMU"
JSON_STACK = "stack=ct1:NFCT,ip2str1:IP2STR,json1:JSON"


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ULOGPY, *args], capture_output=True, text=True, timeout=30, cwd=cwd
    )


def names_of(kind: Kind | None = None) -> str:
    """The comma-separated list of plugin names ulogpy offers as "valid"."""
    return ", ".join(sorted(n for n, c in registry().items() if kind is None or c.kind is kind))


@dataclass
class Case:
    name: str
    text: str
    #: Line the message must point at (None: the error has no line, e.g. no [global]).
    line: int | None
    #: Fragments the message must contain: section, option or plugin, reason, what is valid.
    expect: list[str]
    suffix: str = ".conf"


def _cases() -> list[Case]:
    return [
        Case(
            "unknown_global_key",
            f"[global]\nlogfile=stdout\nlogfle=/tmp/x\n{CT_STACK}\n[ct1]\n[emu1]\n",
            3,
            ["[global]", "logfle", "unknown option", "did you mean 'logfile'",
             "valid: logfile, loglevel, plugin, stack"],
        ),
        Case(
            "unknown_instance_key",
            f"[global]\n{CT_STACK}\n[ct1]\nhash_enable=0\nevent_msk=1\n[emu1]\n",
            5,
            ["[ct1]", "event_msk", "unknown option", "did you mean 'event_mask'",
             "valid: pollinterval, hash_enable", "accept_proto_filter"],
        ),
        Case(
            "bad_integer",
            f"[global]\n{CT_STACK}\n[ct1]\nevent_mask=abc\n[emu1]\n",
            4,
            ["[ct1]", "event_mask", "'abc'", "not an integer", "valid: ", "0x00000005"],
        ),
        Case(
            "event_mask_out_of_range",
            f"[global]\n{CT_STACK}\n[ct1]\nevent_mask=0x10\n[emu1]\n",
            4,
            ["[ct1]", "event_mask", "1 (NEW), 2 (UPDATE), 4 (DESTROY)", "valid: "],
        ),
        Case(
            "src_filter_without_prefix_length",
            f"[global]\n{CT_STACK}\n[ct1]\naccept_src_filter=10.0.0.1\n[emu1]\n",
            4,
            ["[ct1]", "accept_src_filter", "'10.0.0.1'", "No network specified",
             "valid: addr/len"],
        ),
        Case(
            "unknown_protocol",
            f"[global]\n{CT_STACK}\n[ct1]\n\naccept_proto_filter=tcp,nosuchproto\n[emu1]\n",
            5,
            ["[ct1]", "accept_proto_filter", "'nosuchproto'", "Unknown protocol",
             "valid: protocol names from /etc/protocols"],
        ),
        Case(
            "json_bad_mode",
            f"[global]\n{JSON_STACK}\n[ct1]\n[json1]\nfile=/tmp/x.json\nmode=bogus\n",
            6,
            ["[json1]", "mode", "'bogus'", "valid: file"],
        ),
        Case(
            "loglevel_out_of_range",
            f"[global]\nloglevel=9\n{CT_STACK}\n[ct1]\n[emu1]\n",
            2,
            ["[global]", "loglevel", "'9'", "valid: ", "8"],
        ),
        Case(
            "duplicate_global_key",
            f"[global]\nloglevel=5\n# comment\nloglevel=3\n{CT_STACK}\n[ct1]\n[emu1]\n",
            4,
            ["[global]", "loglevel", "more than once", "first at line 2",
             "valid: one value per option"],
        ),
        Case(
            "duplicate_instance_key",
            f"[global]\n{CT_STACK}\n[ct1]\n[emu1]\nsync=1\nfile=/tmp/x\nsync=0\n",
            7,
            ["[emu1]", "sync", "more than once", "first at line 5", "valid: "],
        ),
        Case(
            "missing_global",
            "[ct1]\nhash_enable=0\n[emu1]\nfile=/tmp/x\n",
            None,
            ["[global]", "not found", "valid: a [global] section", "stack="],
        ),
        Case(
            "missing_instance_section",
            f"[global]\nloglevel=3\n{CT_STACK}\n[ct1]\n",
            3,
            ["[emu1]", "not found", "LOGEMU", "valid: options: file, sync"],
        ),
        Case(
            "unknown_plugin",
            "[global]\nstack=ct1:NFCT,ip2str1:IP2STR,print1:PRINTFLWO,emu1:LOGEMU\n"
            "[ct1]\n[emu1]\n",
            2,
            ["[global]", "stack", "unknown plugin 'PRINTFLWO'", "instance print1",
             "did you mean 'PRINTFLOW'", f"valid: {names_of()}"],
        ),
        Case(
            "stack_token_without_colon",
            "[global]\nstack=ct1:NFCT,ip2str1IP2STR,print1:PRINTFLOW,emu1:LOGEMU\n"
            "[ct1]\n[emu1]\n",
            2,
            ["[global]", "stack", "'ip2str1IP2STR'", "not of the form id:PLUGIN",
             "valid: id:PLUGIN"],
        ),
        Case(
            "stack_not_starting_with_input",
            "[global]\nstack=ip2str1:IP2STR,json1:JSON\n[json1]\n",
            2,
            ["[global]", "stack", "first plugin must be an input", "IP2STR",
             f"valid: {names_of(Kind.INPUT)}"],
        ),
        Case(
            "stack_not_ending_with_output",
            "[global]\nstack=ct1:NFCT,ip2str1:IP2STR,print1:PRINTFLOW\n[ct1]\n",
            2,
            ["[global]", "stack", "last plugin must be an output", "PRINTFLOW",
             f"valid: {names_of(Kind.OUTPUT)}"],
        ),
        Case(
            "input_key_not_provided",
            "[global]\nstack=ct1:NFCT,print1:PRINTFLOW,emu1:LOGEMU\n[ct1]\n[emu1]\n",
            2,
            ["[global]", "stack", "'orig.ip.saddr.str'", "print1:PRINTFLOW",
             "valid: put one of these before it: IP2STR"],
        ),
        Case(
            "no_stack",
            "# no stack at all\n[global]\nlogfile=stdout\nloglevel=5\n",
            2,
            ["[global]", "no stack", "valid: stack="],
        ),
        Case(
            "unterminated_quote",
            f'[global]\n{CT_STACK}\n[ct1]\n[emu1]\nfile="/x\n',
            5,
            ["[emu1]", "file", "unterminated", 'valid: file="'],
        ),
        Case(
            "key_without_value",
            f"[global]\n{CT_STACK}\n[ct1]\n[emu1]\nfile\n",
            5,
            ["[emu1]", "file", "no value", "valid: file="],
        ),
        Case(
            "plugin_not_a_ulogd_so",
            '[global]\nplugin="/usr/lib/x86_64-linux-gnu/libc.so.6"\n'
            f"{CT_STACK}\n[ct1]\n[emu1]\n",
            2,
            ["[global]", "plugin", "libc.so.6", "not a ulogd plugin",
             "valid: a path ending in ulogd_<kind>_<NAME>.so"],
        ),
        Case(
            "plugin_not_loaded",
            '[global]\nplugin="/usr/lib/x86_64-linux-gnu/ulogd/ulogd_inpflow_NFCT.so"\n'
            'plugin="/usr/lib/x86_64-linux-gnu/ulogd/ulogd_filter_IP2STR.so"\n'
            f"{JSON_STACK}\n[ct1]\n[json1]\n",
            4,
            ["[global]", "stack", "'JSON'", "not loaded by any plugin= line",
             "valid: IP2STR, NFCT"],
        ),
        # -- the same in TOML syntax: lines must be those of the TOML file ----------------
        Case(
            "toml_unknown_key",
            '[global]\nstack = ["ct1:NFCT,ip2str1:IP2STR,json1:JSON"]\n\n'
            '[ct1]\nhash_enable = 0\nevent_msk = 1\n\n[json1]\nfile = "/tmp/x"\n',
            6,
            ["[ct1]", "event_msk", "did you mean 'event_mask'", "valid: pollinterval"],
            ".toml",
        ),
        Case(
            "toml_unknown_global_key",
            '# top comment\n[global]\nloglevel = 3\nlogfle = "stdout"\n'
            'stack = "ct1:NFCT,ip2str1:IP2STR,json1:JSON"\n[ct1]\n[json1]\n',
            4,
            ["[global]", "logfle", "did you mean 'logfile'", "valid: logfile"],
            ".toml",
        ),
        Case(
            "toml_bad_value",
            '[global]\nstack = ["ct1:NFCT,ip2str1:IP2STR,json1:JSON"]\n[ct1]\n'
            'hash_enable = 0\naccept_src_filter = "10.0.0.1"\n[json1]\n',
            5,
            ["[ct1]", "accept_src_filter", "No network specified", "valid: addr/len"],
            ".toml",
        ),
        Case(
            "toml_bad_integer",
            '[global]\nstack = ["ct1:NFCT,ip2str1:IP2STR,json1:JSON"]\n[ct1]\n'
            'event_mask = "abc"\n[json1]\n',
            4,
            ["[ct1]", "event_mask", "not an integer", "valid: "],
            ".toml",
        ),
        Case(
            "toml_missing_section",
            '[global]\nstack = [\n    "ct1:NFCT,ip2str1:IP2STR,json1:JSON",\n'
            '    "ct1:NFCT,ip2str1:IP2STR,print1:PRINTFLOW,emu1:LOGEMU",\n]\n\n'
            '[ct1]\nhash_enable = 0\n\n[json1]\nfile = "/tmp/x"\n',
            4,
            ["[emu1]", "not found", "LOGEMU", "valid: options: file, sync"],
            ".toml",
        ),
        Case(
            "toml_unknown_plugin",
            '[global]\nloglevel = 3\nstack = [\n    "ct1:NFCT,ip2str1:IP2STR,json1:JSON",\n'
            '    # the second one has a typo\n'
            '    "ct1:NFCT,ip2str1:IP2STR,print1:PRINTFLW,emu1:LOGEMU",\n]\n'
            '[ct1]\n[json1]\n[emu1]\n',
            6,
            ["[global]", "stack", "unknown plugin 'PRINTFLW'", "did you mean 'PRINTFLOW'",
             f"valid: {names_of()}"],
            ".toml",
        ),
        Case(
            "toml_duplicate_key",
            '[global]\nstack = ["ct1:NFCT,ip2str1:IP2STR,json1:JSON"]\n[ct1]\n'
            'hash_enable = 0\nevent_mask = 1\nhash_enable = 1\n[json1]\n',
            6,
            ["[ct1]", "hash_enable", "more than once", "first at line 4"],
            ".toml",
        ),
        Case(
            "toml_syntax_error",
            '[global]\nstack = ["ct1:NFCT,ip2str1:IP2STR,json1:JSON"]\n[ct1]\n'
            'hash_enable = = 0\n',
            4,
            ["invalid TOML"],
            ".toml",
        ),
    ]


CASES = _cases()


def assert_clean_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit 1, no traceback, one `ulogpy: ...` line on stderr holding every fragment."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    message = lines[0]
    assert message.startswith("ulogpy: "), message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing in: {message}"
    return message


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_check_reports_error(case: Case, tmp_path: Path) -> None:
    """`--check` refuses the file with a located, explained message."""
    path = tmp_path / f"{case.name}{case.suffix}"
    path.write_text(case.text)
    where = f"{path}:{case.line}: " if case.line else f"{path}: "
    proc = run_cli("--check", "-c", str(path))
    assert proc.stdout == ""
    message = assert_clean_error(proc, where, *case.expect)
    if case.line is None:
        assert f"{path}:" not in message.replace(f"{path}: ", "")


@pytest.mark.parametrize(
    "name", ["unknown_instance_key", "missing_instance_section", "unknown_plugin",
             "toml_bad_value"]
)
def test_plain_run_starts_nothing(name: str, tmp_path: Path) -> None:
    """Without --check the same errors stop start-up before any file or pidfile exists."""
    case = next(c for c in CASES if c.name == name)
    logfile = tmp_path / "own.log"
    emu = tmp_path / "emu.log"
    text = case.text.replace("[emu1]\n", f'[emu1]\nfile="{emu}"\n')
    if case.suffix == ".toml":
        text = text.replace("[global]\n", f'[global]\nlogfile = "{logfile}"\n', 1)
    else:
        text = text.replace("[global]\n", f'[global]\nlogfile="{logfile}"\n', 1)
    path = tmp_path / f"{name}{case.suffix}"
    path.write_text(text)
    pidfile = tmp_path / "ulogpy.pid"
    proc = run_cli("-c", str(path), "-p", str(pidfile))
    assert_clean_error(proc, f"{path}:", *case.expect[:2])
    assert proc.stdout == ""
    assert not logfile.exists()
    assert not emu.exists()
    assert not pidfile.exists()


@pytest.mark.parametrize("kind", ["missing", "directory", "not_utf8"])
def test_unreadable_config_file(kind: str, tmp_path: Path) -> None:
    """A config file that cannot be read is named with the reason."""
    if kind == "missing":
        path, reason = tmp_path / "nope.conf", "No such file or directory"
    elif kind == "directory":
        path, reason = tmp_path / "adir.conf", "Is a directory"
        path.mkdir()
    else:
        path, reason = tmp_path / "latin1.conf", "not UTF-8"
        path.write_bytes(b"[global]\nlogfile=\"/tmp/caf\xe9\"\n")
    for args in (["--check", "-c", str(path)], ["-c", str(path)]):
        proc = run_cli(*args)
        assert_clean_error(proc, f"{path}: ", reason)


def test_first_error_wins_with_its_own_line(tmp_path: Path) -> None:
    """With several broken stacks the message names the first, at its own line."""
    path = tmp_path / "two.conf"
    path.write_text(
        "[global]\n"
        "stack=ct1:NFCT,ip2str1:IP2STR,json1:JSON\n"
        "stack=ct1:NFCT,ip2str1:IP2STR,print1:PRINTFLOW,emu1:NOSUCH\n"
        "stack=ct1:NFCT,ip2str1:IP2STR,print1:PRINTFLOW\n"
        "[ct1]\n[json1]\n"
    )
    proc = run_cli("--check", "-c", str(path))
    assert_clean_error(proc, f"{path}:3: ", "unknown plugin 'NOSUCH'")


def test_good_config_passes_check(tmp_path: Path) -> None:
    """The control case: a correct file gives exit 0 and a summary on stdout."""
    path = tmp_path / "good.conf"
    path.write_text(f"[global]\n{CT_STACK}\n{JSON_STACK}\n[ct1]\n[emu1]\n[json1]\n")
    proc = run_cli("--check", "-c", str(path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout == f"{path}: OK, 2 stack(s), 6 plugin instance(s)\n"
