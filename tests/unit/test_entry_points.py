"""Third-party plugins register through the `ulogpy.plugins` entry-point group."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

from tests.ulogd_ref import ULOGPY

PLUGIN = textwrap.dedent('''
    from ulogpy.core.keys import keys, STRING
    from ulogpy.core.plugin import FilterPlugin, Option

    class Upper(FilterPlugin):
        name = "UPPER"
        options = (Option("suffix", str, "!"),)
        input_keys = keys(("print", STRING))
        output_keys = keys(("print.upper", STRING))

        def interp(self, record):
            record["print.upper"] = record["print"].upper() + self.config.suffix

    class Broken(FilterPlugin):
        name = "broken"
''')


def _site(tmp_path: Path, entry: str) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "thirdparty_upper.py").write_text(PLUGIN)
    dist = site / "thirdparty_upper-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-upper\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[ulogpy.plugins]\n{entry}\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(site)
    return env


def test_entry_point_plugin_is_described_and_usable_in_a_stack(tmp_path):
    env = _site(tmp_path, "UPPER = thirdparty_upper:Upper")
    info = subprocess.run([ULOGPY, "-i", "UPPER"], env=env, capture_output=True, text=True)
    assert info.returncode == 0, info.stderr
    assert info.stdout.splitlines() == [
        "Name: UPPER", "Config options:", "\tVar: suffix (String, Default: !)",
        "Input keys:", "\tKey: print (string)", "Output keys:", "\tKey: print.upper (string)",
    ]
    conf = tmp_path / "c.conf"
    conf.write_text(
        "[global]\nstack=ct1:NFCT,ip2str1:IP2STR,p1:PRINTFLOW,u1:UPPER,j1:JSON\n"
        f'[ct1]\n[u1]\nsuffix="?"\n[j1]\nfile="{tmp_path}/x.json"\n'
    )
    check = subprocess.run([ULOGPY, "--check", "-c", str(conf)], env=env,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_broken_entry_point_plugin_is_refused_with_its_name(tmp_path):
    env = _site(tmp_path, "broken = thirdparty_upper:Broken")
    result = subprocess.run([ULOGPY, "-i", "NFCT"], env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "Broken" in result.stderr and "upper-case" in result.stderr
