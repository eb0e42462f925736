"""`pip` builds the compiled fast path from the sdist, and installs without it where it
cannot compile (the daemon then runs the pure-Python path and says so)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist of a copy of the tree (so that nothing is written into the checkout)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "setup.py"):
        shutil.copy(ROOT / name, src / name)
    for name in ("ulogpy", "plugins"):
        shutil.copytree(ROOT / name, src / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(out)], cwd=src,
                   check=True, capture_output=True, timeout=120)
    (tarball,) = out.glob("ulogpy-*.tar.gz")
    return tarball


def _wheel(sdist: Path, dest: Path, env: dict[str, str] | None = None) -> list[str]:
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                           str(sdist), "-w", str(dest)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = dest.glob("ulogpy-*.whl")
    return zipfile.ZipFile(wheel).namelist()


def test_the_sdist_builds_the_extension(sdist: Path, tmp_path: Path) -> None:
    names = _wheel(sdist, tmp_path)
    assert "ulogpy/_fastpath.c" in names
    assert any(n.startswith("ulogpy/_fastpath.") and n.endswith(".so") for n in names)


def test_without_a_compiler_the_install_still_succeeds(sdist: Path, tmp_path: Path) -> None:
    env = dict(os.environ, CC="/bin/false", LDSHARED="/bin/false")
    names = _wheel(sdist, tmp_path, env)
    assert "ulogpy/fastpath.py" in names and "ulogpy/cli.py" in names
    assert not any(n.endswith(".so") for n in names)
