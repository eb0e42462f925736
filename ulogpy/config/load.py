"""Find and load a configuration file of either syntax into the `Config` model.

The one place that knows where the configuration comes from: the file named
with `-c`, else `/etc/ulogpy.toml` when it exists, else the shipped default
embedded in the package.
"""

from __future__ import annotations

import os
from importlib import resources

from ulogpy.config import DEFAULT_CONFIG
from ulogpy.config.errors import ConfigError
from ulogpy.config.model import Config, build_config
from ulogpy.config.tomlconf import parse_toml
from ulogpy.config.ulogdconf import parse_ulogd_conf

DEFAULT_CONFIG_NAME = "ulogpy.toml"


def read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file: {exc.strerror}", file=path) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text: {exc.reason}", file=path) from None


def is_toml(path: str, text: str) -> bool:
    """TOML by extension; ulogd.conf otherwise."""
    return path.endswith(".toml")


def load_config(path: str) -> Config:
    text = read_text(path)
    doc = parse_toml(text, path) if is_toml(path, text) else parse_ulogd_conf(text, path)
    return build_config(doc)


def load_embedded_default() -> Config:
    """The shipped ulogpy.toml, embedded in the package."""
    text = resources.files("ulogpy").joinpath("data", DEFAULT_CONFIG_NAME).read_text()
    return build_config(parse_toml(text, f"<embedded {DEFAULT_CONFIG_NAME}>"))



def resolve_path(path: str | None) -> str | None:
    """The file to read for `-c path`, or None for the embedded default."""
    if path:
        return path
    return DEFAULT_CONFIG if os.path.exists(DEFAULT_CONFIG) else None


def load(path: str | None) -> Config:
    """The configuration `-c path` means (see the module docstring)."""
    file = resolve_path(path)
    return load_config(file) if file else load_embedded_default()
