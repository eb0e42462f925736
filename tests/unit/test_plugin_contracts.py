"""Registration refuses plugin classes that break their contract, naming what is wrong.

Two checks (`ulogpy.core.contracts`): overridden methods keep the base class's
parameters, and every option a method reads is in the plugin's option table.
The broken classes are defined here, inside the tests, as a plugin author would
write them; every built-in plugin must pass both checks.
"""

from __future__ import annotations

import inspect
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.ulogd_ref import ULOGPY
from tests.unit.test_entry_points import _site
from ulogpy.core import contracts
from ulogpy.core.keys import STRING, keys
from ulogpy.core.loopapi import LoopAPI
from ulogpy.core.plugin import FilterPlugin, InputPlugin, Option, Plugin
from ulogpy.core.registry import RegistryError, registry, validate_plugin_class
from ulogpy.daemon.loop import Loop


class Base(FilterPlugin):
    """A valid filter the broken ones start from."""

    name = "UPPER"
    options = (Option("suffix", str, "!"), Option("limit", int, 10))
    input_keys = keys(("print", STRING))
    output_keys = keys(("print.upper", STRING))

    def interp(self, record: dict) -> bool | None:
        record["print.upper"] = record["print"].upper()[: self.config.limit] + self.config.suffix
        return None


def refused(cls: type) -> str:
    with pytest.raises(RegistryError) as info:
        validate_plugin_class(cls)
    return str(info.value)


# ------------------------------------------------------------------ option names


def test_a_valid_plugin_passes() -> None:
    class Fine(Base):
        def configure(self) -> None:
            cfg = self.config
            self.text = f"{cfg.suffix}{cfg.limit}{self.config.model_dump()}"
            # A comment naming cfg.nothing, and a string: "self.config.nothing".
            other = {"config": 1}
            self.n = other.get("config")

    validate_plugin_class(Fine)


def test_a_misspelt_option_after_self_config_is_refused() -> None:
    class Typo(Base):
        def interp(self, record: dict) -> bool | None:
            record["print.upper"] = record["print"] + self.config.sufix
            return None

    message = refused(Typo)
    assert "plugin UPPER" in message and "Typo.interp" in message
    assert "'sufix'" in message and "did you mean 'suffix'" in message
    assert "options: suffix, limit" in message
    line = inspect.getsourcelines(Typo.interp)[1] + 1
    assert f"test_plugin_contracts.py:{line}" in message


def test_a_misspelt_option_through_an_alias_is_refused() -> None:
    class Alias(Base):
        def configure(self) -> None:
            cfg = self.config
            self.limit = cfg.limit
            self.suffix = cfg.sufix

    assert "Alias.configure uses option 'sufix'" in refused(Alias)


def test_options_read_in_a_helper_nested_function_or_getattr_are_checked() -> None:
    class Helper(Base):
        def configure(self) -> None:
            self._setup(self.config)

        def _setup(self, cfg) -> None:
            self.limit = cfg.limt

    class Nested(Base):
        def configure(self) -> None:
            self.get = lambda: self.config.suffx

    class ByName(Base):
        def configure(self) -> None:
            self.suffix = getattr(self.config, "sufix")  # noqa: B009 - what is checked

    assert "Helper._setup uses option 'limt'" in refused(Helper)
    assert "Nested.configure uses option 'suffx'" in refused(Nested)
    assert "ByName.configure uses option 'sufix'" in refused(ByName)


def test_methods_inherited_from_a_plugin_base_are_checked_against_the_subclass() -> None:
    class Shared(Base):
        """Reads `limit`: fine for itself, not for a subclass without that option."""

    class Narrow(Shared):
        name = "NARROW"
        options = (Option("suffix", str, "!"),)

    validate_plugin_class(Shared)
    message = refused(Narrow)
    assert "plugin NARROW: Base.interp uses option 'limit'" in message
    assert message.endswith("options: suffix")


def test_the_text_prefilter_sees_every_option_the_parse_sees() -> None:
    """`_near_options` decides which methods are parsed: on every built-in plugin it
    must find at least the options the parse finds, else a typo could slip through."""
    checked = 0
    for cls in registry().values():
        for klass in cls.__mro__:
            for value in vars(klass).values():
                for func in contracts._functions(value):
                    parsed = {name for name, _line in contracts._option_uses_of(func)}
                    assert parsed <= contracts._near_options(func), func.__qualname__
                    checked += bool(parsed)
    assert checked > 20


# ------------------------------------------------------------------ signatures


def test_an_override_with_other_parameter_names_is_refused() -> None:
    class Renamed(Base):
        def interp(self, rec: dict) -> bool | None:
            return None

    message = refused(Renamed)
    assert message == ("plugin UPPER: interp(self, rec) does not match the base class: "
                       "expected interp(self, record)")


def test_overrides_with_missing_extra_or_keyword_parameters_are_refused() -> None:
    class NoLoop(Base):
        def start(self) -> None:
            pass

    class Extra(Base):
        def start(self, loop, when) -> None:
            pass

    class KeywordOnly(Base):
        def signal(self, *, signum: int) -> None:
            pass

    assert "expected start(self, loop)" in refused(NoLoop)
    assert "start(self, loop, when) does not match" in refused(Extra)
    assert "expected signal(self, signum)" in refused(KeywordOnly)


def test_an_extra_parameter_with_a_default_is_accepted() -> None:
    class Optional(Base):
        def start(self, loop: LoopAPI, verbose: bool = False) -> None:
            pass

    validate_plugin_class(Optional)


def test_method_kinds_must_match() -> None:
    class Instance(Base):
        def declared_counters(self):  # a classmethod in the base class
            return ()

    class Static(InputPlugin):
        name = "STATIC"

        @staticmethod
        def on_readable() -> None:
            pass

    assert "declared_counters must be a classmethod declared_counters(cls)" in refused(Instance)
    assert "on_readable must be a method on_readable(self)" in refused(Static)


def test_init_keeps_its_parameters() -> None:
    class Init(Base):
        def __init__(self, instance_id: str) -> None:
            super().__init__(instance_id, None)

    assert "expected __init__(self, instance_id, config)" in refused(Init)


def test_every_builtin_plugin_keeps_the_contract() -> None:
    plugins = registry()
    assert {"NFCT", "NFLOG", "UNIXSOCK", "BASE", "IFINDEX", "JSON", "LOGEMU"} <= plugins.keys()
    for cls in plugins.values():
        validate_plugin_class(cls)


def test_a_broken_third_party_plugin_is_refused_at_load_with_its_name(tmp_path: Path) -> None:
    env = _site(tmp_path, "UPPER = thirdparty_upper:Upper")
    module = tmp_path / "site" / "thirdparty_upper.py"
    module.write_text(module.read_text() + textwrap.dedent('''
        class Upper(Upper):
            def configure(self):
                self.end = self.config.sufix
    '''))
    result = subprocess.run([ULOGPY, "-i", "NFCT"], env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "plugin UPPER: Upper.configure uses option 'sufix'" in result.stderr


# ------------------------------------------------------------------ the loop's API


def test_the_daemon_loop_provides_the_loop_api() -> None:
    loop = Loop()
    try:
        assert isinstance(loop, LoopAPI)
    finally:
        loop.close()
    for name, member in vars(LoopAPI).items():
        if callable(member) and not name.startswith("_"):
            want = list(inspect.signature(member).parameters)
            assert list(inspect.signature(getattr(Loop, name)).parameters) == want, name
    assert inspect.signature(Plugin.start).parameters["loop"].annotation == "LoopAPI"
