"""One test per class of configuration error: exit status 1, no traceback, and a
message naming file:line, the section, the option or plugin, and what is valid."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ULOGPY = str(Path(sys.executable).with_name("ulogpy"))
GOOD_STACK = "stack=ct1:NFCT,ip2str1:IP2STR,print1:PRINTFLOW,emu1:LOGEMU"
TAIL = '[ct1]\n[emu1]\nfile="/tmp/ulogpy-never-written.log"\n'

CASES = {
    "unknown_global_key": (
        f"[global]\nlogfil=stdout\n{GOOD_STACK}\n{TAIL}",
        [":2:", "[global]", "logfil", "did you mean 'logfile'", "valid: logfile"],
    ),
    "unknown_instance_key": (
        f"[global]\n{GOOD_STACK}\n[ct1]\nhash_enabled=0\n[emu1]\nfile=/tmp/x\n",
        [":4:", "[ct1]", "hash_enabled", "did you mean 'hash_enable'", "event_mask"],
    ),
    "bad_integer": (
        f"[global]\n{GOOD_STACK}\n[ct1]\nevent_mask=abc\n[emu1]\nfile=/tmp/x\n",
        [":4:", "[ct1]", "event_mask", "not an integer", "valid:"],
    ),
    "bad_filter_value": (
        f"[global]\n{GOOD_STACK}\n[ct1]\naccept_src_filter=10.0.0.1\n[emu1]\nfile=/tmp/x\n",
        [":4:", "[ct1]", "accept_src_filter", "No network specified", "addr/len"],
    ),
    "bad_protocol": (
        f"[global]\n{GOOD_STACK}\n[ct1]\naccept_proto_filter=tcp,nosuch\n[emu1]\nfile=/tmp/x\n",
        [":4:", "accept_proto_filter", "Unknown protocol", "/etc/protocols"],
    ),
    "bad_loglevel": (
        f"[global]\nloglevel=9\n{GOOD_STACK}\n{TAIL}",
        [":2:", "[global]", "loglevel", "less than or equal to 8"],
    ),
    "bad_json_mode": (
        "[global]\nstack=ct1:NFCT,ip2str1:IP2STR,j1:JSON\n[ct1]\n[j1]\nmode=bogus\n",
        [":5:", "[j1]", "mode", "unknown mode 'bogus'", "valid: file"],
    ),
    "duplicate_global_key": (
        f"[global]\nloglevel=5\nloglevel=3\n{GOOD_STACK}\n{TAIL}",
        [":3:", "[global]", "loglevel", "more than once (first at line 2)"],
    ),
    "duplicate_instance_key": (
        f"[global]\n{GOOD_STACK}\n[ct1]\n[emu1]\nsync=1\nsync=0\n",
        [":6:", "[emu1]", "sync", "more than once (first at line 5)"],
    ),
    "missing_global": (
        TAIL,
        ["section [global] not found", "valid:"],
    ),
    "missing_instance_section": (
        f"[global]\n{GOOD_STACK}\n[ct1]\n",
        ["[emu1]", "not found", "plugin LOGEMU", "needs one", "file, sync"],
    ),
    "unknown_plugin": (
        f"[global]\nstack=ct1:NFCT,ip2str1:IP2STR,p1:PRINTFLOWS,emu1:LOGEMU\n{TAIL}",
        [":2:", "[global]", "unknown plugin 'PRINTFLOWS'", "did you mean 'PRINTFLOW'",
         "valid: IP2STR, JSON"],
    ),
    "stack_token_syntax": (
        f"[global]\nstack=ct1:NFCT,ip2str1IP2STR,emu1:LOGEMU\n{TAIL}",
        [":2:", "'ip2str1IP2STR' is not of the form id:PLUGIN", "valid: id:PLUGIN"],
    ),
    "stack_not_starting_with_input": (
        f"[global]\nstack=ip2str1:IP2STR,emu1:LOGEMU\n{TAIL}",
        [":2:", "first plugin must be an input", "IP2STR is a filter", "valid: NFCT"],
    ),
    "stack_not_ending_with_output": (
        f"[global]\nstack=ct1:NFCT,ip2str1:IP2STR\n{TAIL}",
        [":2:", "last plugin must be an output", "valid: JSON, LOGEMU"],
    ),
    "unresolved_input_key": (
        f"[global]\nstack=ct1:NFCT,print1:PRINTFLOW,emu1:LOGEMU\n{TAIL}",
        [":2:", "input key 'orig.ip.saddr.str' of print1:PRINTFLOW", "IP2STR"],
    ),
    "no_stack": (
        "[global]\nloglevel=5\n",
        [":1:", "[global]", "no stack defined", "stack=id:INPUT"],
    ),
    "unterminated_quote": (
        f'[global]\n{GOOD_STACK}\n[ct1]\n[emu1]\nfile="/tmp/x\n',
        [":5:", "[emu1]", "file", "unterminated quoted value"],
    ),
    "not_a_ulogd_plugin_file": (
        f'[global]\nplugin="/usr/lib/libc.so.6"\n{GOOD_STACK}\n{TAIL}',
        [":2:", "plugin", "not a ulogd plugin file", "ulogd_<kind>_<NAME>.so"],
    ),
    "plugin_not_loaded_by_plugin_lines": (
        f'[global]\nplugin="/usr/lib/x86_64-linux-gnu/ulogd/ulogd_inpflow_NFCT.so"\n'
        f"{GOOD_STACK}\n{TAIL}",
        [":3:", "plugin 'IP2STR' is not loaded by any plugin= line"],
    ),
}

TOML_CASES = {
    "toml_unknown_key": (
        '[global]\nstack = ["ct1:NFCT,ip2str1:IP2STR,j1:JSON"]\n\n[ct1]\nhash_enabel = 0\n'
        '[j1]\nfile = "/tmp/x"\n',
        [":5:", "[ct1]", "hash_enabel", "did you mean 'hash_enable'"],
    ),
    "toml_bad_value": (
        '[global]\nstack = ["ct1:NFCT,ip2str1:IP2STR,j1:JSON"]\n[ct1]\n[j1]\nsync = "often"\n',
        [":5:", "[j1]", "sync", "not an integer"],
    ),
    "toml_missing_section": (
        '[global]\nstack = ["ct1:NFCT,ip2str1:IP2STR,j1:JSON"]\n[ct1]\n',
        ["[j1]", "not found", "plugin JSON", "needs one"],
    ),
    "toml_unknown_plugin": (
        '[global]\nloglevel = 3\nstack = ["ct1:NFCT,ip2str1:IP2STR,j1:JSONX"]\n[ct1]\n',
        [":3:", "unknown plugin 'JSONX'", "did you mean 'JSON'"],
    ),
    "toml_syntax": (
        '[global]\nstack = ["ct1:NFCT"\n',
        ["invalid TOML", "Unclosed array"],
    ),
}


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([ULOGPY, *args], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("case", sorted(CASES) + sorted(TOML_CASES))
def test_config_error_is_clear_and_exits_1(tmp_path, case):
    text, needles = CASES.get(case) or TOML_CASES[case]
    path = tmp_path / (f"{case}.toml" if case in TOML_CASES else f"{case}.conf")
    path.write_text(text)
    for args in (["--check", "-c", str(path)], ["-c", str(path)]):
        result = _run(args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        assert result.stderr.startswith(f"ulogpy: {path}"), result.stderr
        for needle in needles:
            assert needle in result.stderr, f"{needle!r} missing from {result.stderr!r}"
    assert not Path("/tmp/ulogpy-never-written.log").exists()


def test_unreadable_config_file(tmp_path):
    result = _run(["-c", str(tmp_path / "missing.conf")])
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "missing.conf: cannot read configuration file: No such file or directory" \
        in result.stderr
